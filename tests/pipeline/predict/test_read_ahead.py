"""Read-ahead in the prediction loop: the next case is opened on a worker thread once the current case's
network has run, with the same outputs and failures as a strictly sequential run."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import livercad.pipeline.predict.predictor as predictor_mod
import livercad.segment.infer as infer_mod
from livercad.config import load_config, save_config
from livercad.pipeline.predict.run import run_pipeline

VOLATILE = {"seconds"}  # the only column allowed to differ between the two runs (paths name their folder)


def _inference(tmp_path: Path, read_ahead: bool) -> Path:
    path = tmp_path / f"inference_{read_ahead}.yaml"
    cfg = load_config(None, ["inference.backend=torch", "inference.precision=fp32", "inference.qc_images=true",
                             "inference.coarse_to_fine=false", "inference.report=false",
                             f"inference.read_ahead={str(read_ahead).lower()}"])
    save_config(cfg, path)
    return path


def _batch(folder: Path, ct_volume: Callable[..., Path]) -> Path:
    folder.mkdir()
    for i in range(4):
        ct_volume(folder / f"case{i}.nii.gz", seed=i)
    good = (folder / "case0.nii.gz").read_bytes()
    (folder / "case2.nii.gz").write_bytes(good[: len(good) // 2])  # broken in the middle of the batch
    return folder


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open() as fh:
        return [{k: v.replace(str(out), "OUT") for k, v in row.items() if k not in VOLATILE}
                for row in csv.DictReader(fh)]


def _events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Log ``(event, case, thread)``: each case's opening and the end of each network run."""
    log: list[tuple[str, str, str]] = []
    real_open, real_forward = predictor_mod.open_case, infer_mod.segment_prepared

    def open_case(case, **kw):  # type: ignore[no-untyped-def]
        log.append(("open", case.row.case_id, threading.current_thread().name))
        return real_open(case, **kw)

    def segment_prepared(seg, prepared, **kw):  # type: ignore[no-untyped-def]
        out = real_forward(seg, prepared, **kw)
        log.append(("network", "", threading.current_thread().name))
        return out

    monkeypatch.setattr(predictor_mod, "open_case", open_case)
    monkeypatch.setattr(infer_mod, "segment_prepared", segment_prepared)
    return log


@pytest.mark.parametrize("classifier", [False, True])
def test_read_ahead_gives_the_sequential_outputs_and_opens_after_the_network(
        tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch, classifier: bool) -> None:
    bundle = make_bundle(classifier=classifier)
    folder = _batch(tmp_path / "in", ct_volume)
    plain = run_pipeline(folder, tmp_path / "plain", model=bundle, progress=False,
                         config=_inference(tmp_path, read_ahead=False))
    log = _events(monkeypatch)
    ahead = run_pipeline(folder, tmp_path / "ahead", model=bundle, progress=False,
                         config=_inference(tmp_path, read_ahead=True))
    # the same records, masks and QC pictures; the broken case fails alone, with the same one-line reason
    assert _rows(tmp_path / "plain") == _rows(tmp_path / "ahead")
    assert [c.case_id for c in ahead.failures] == ["case2"] == [c.case_id for c in plain.failures]
    assert ahead.failures[0].error == plain.failures[0].error and "case2" in ahead.failures[0].error
    for name in ("case0", "case1", "case3"):
        assert (tmp_path / "plain" / "masks" / f"{name}.nii.gz").read_bytes() \
            == (tmp_path / "ahead" / "masks" / f"{name}.nii.gz").read_bytes()
        assert (tmp_path / "plain" / "qc" / f"{name}.png").read_bytes() \
            == (tmp_path / "ahead" / "qc" / f"{name}.png").read_bytes()
    # the first case opens on the main thread; every later one on the worker, after the previous network ran
    opens = [(case, thread) for event, case, thread in log if event == "open"]
    assert [c for c, _ in opens] == ["case0", "case1", "case2", "case3"]
    assert opens[0][1] == "MainThread" and all(t.startswith("livercad-read-ahead") for _, t in opens[1:])
    order = [e if e == "network" else c for e, c, _ in log]
    assert order == ["case0", "network", "case1", "network", "case2", "case3", "network"]


def test_one_case_or_read_ahead_off_opens_on_the_main_thread(
        tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = make_bundle(classifier=False)
    folder = _batch(tmp_path / "in", ct_volume)
    log = _events(monkeypatch)
    run_pipeline(folder / "case0.nii.gz", tmp_path / "one", model=bundle, progress=False,
                 config=_inference(tmp_path, read_ahead=True))
    run_pipeline(folder, tmp_path / "off", model=bundle, progress=False, config=_inference(tmp_path, read_ahead=False))
    threads = {thread for event, _, thread in log if event == "open"}
    assert threads == {"MainThread"} and sum(e == "open" for e, _, _ in log) == 5

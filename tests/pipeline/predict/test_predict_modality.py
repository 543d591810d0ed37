"""Per-case modality at prediction: case record, then --modality, then the intensity rule; refusals per case."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from livercad.cli import app
from livercad.errors import ConfigError
from livercad.modality import guess_from_intensities
from livercad.pipeline.predict.run import run_pipeline


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["case_id"]: r for r in csv.DictReader(path.open())}


def test_intensity_rule_picks_ct_for_a_volume_with_air(tmp_path: Path, make_bundle: Callable[..., Path],
                                                       ct_volume: Callable[..., Path]) -> None:
    import nibabel as nib

    scan = ct_volume(tmp_path / "scan.nii.gz")
    assert guess_from_intensities(np.asarray(nib.load(scan).dataobj)) == "ct"
    res = run_pipeline(scan, tmp_path / "out", model=make_bundle(), progress=False)
    case = res.cases[0]
    assert case.ok, case.error
    assert (case.modality, case.modality_source, case.intensity_unit) == ("ct", "intensity-rule", "HU")
    row = _rows(tmp_path / "out" / "predictions.csv")["scan"]
    assert (row["modality"], row["modality_source"], row["intensity_unit"]) == ("ct", "intensity-rule", "HU")
    record = json.loads((tmp_path / "out" / "cases" / "scan.json").read_text())
    assert record["modality"] == "ct" and record["modality_source"] == "intensity-rule"
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["cases"][0]["modality"] == "ct" and run["modality"] == {"run": None, "segmenter_trained_on": ["ct"]}


def test_mr_row_fails_on_a_ct_only_bundle_and_the_batch_goes_on(
        tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path],
        mr_volume: Callable[..., Path], manifest_csv: Callable[..., Path]) -> None:
    ct_volume(tmp_path / "a.nii.gz", seed=1)
    mr_volume(tmp_path / "b.nii.gz")
    ct_volume(tmp_path / "c.nii.gz", seed=2)
    m = manifest_csv(tmp_path / "m.csv", "case_id,image,modality",
                     ["a,a.nii.gz,CT", "b,b.nii.gz,mr-t2", "c,c.nii.gz,"])
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["predict", "--model", str(make_bundle()), "-i", str(m), "-o", str(out), "-q"])
    assert res.exit_code == 3, res.output
    failures = _rows(out / "failures.csv")
    assert list(failures) == ["b"]
    reason = failures["b"]["reason"]
    assert "\n" not in reason and reason.startswith(str(tmp_path / "b.nii.gz"))
    assert "modality 'mr'" in reason and "trained on ['ct'] only" in reason and "case's record" in reason
    preds = _rows(out / "predictions.csv")
    assert sorted(preds) == ["a", "c"]
    assert (preds["a"]["modality"], preds["a"]["modality_source"]) == ("ct", "case")
    assert (preds["c"]["modality"], preds["c"]["modality_source"]) == ("ct", "intensity-rule")
    run = json.loads((out / "run.json").read_text())
    b = next(c for c in run["cases"] if c["case_id"] == "b")
    assert b == {"case_id": "b", "ok": False, "modality": "mr", "modality_source": "case", "image_domain": "real",
                 "verdict_status": None}


def test_manifest_column_wins_over_the_run_modality(tmp_path: Path, make_bundle: Callable[..., Path],
                                                    ct_volume: Callable[..., Path],
                                                    manifest_csv: Callable[..., Path]) -> None:
    ct_volume(tmp_path / "a.nii.gz")
    ct_volume(tmp_path / "b.nii.gz", seed=1)
    m = manifest_csv(tmp_path / "m.csv", "case_id,image,Modality", ["a,a.nii.gz,ct", "b,b.nii.gz,"])
    res = run_pipeline(m, tmp_path / "out", model=make_bundle(), progress=False, modality="mr")
    a, b = res.cases
    assert a.ok and (a.modality, a.modality_source) == ("ct", "case")
    assert not b.ok and (b.modality, b.modality_source) == ("mr", "run")
    assert "the run's --modality" in b.error
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["modality"]["run"] == "mr"


def test_unknown_modalities(tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path],
                            manifest_csv: Callable[..., Path]) -> None:
    ct_volume(tmp_path / "a.nii.gz")
    bundle = make_bundle()
    with pytest.raises(ConfigError, match="--modality: unknown modality 'xray'"):
        run_pipeline(tmp_path / "a.nii.gz", tmp_path / "o1", model=bundle, progress=False, modality="xray")
    res = CliRunner().invoke(app, ["predict", "-m", str(bundle), "-i", str(tmp_path / "a.nii.gz"), "-o",
                                   str(tmp_path / "o2"), "--modality", "xray", "-q"])
    assert res.exit_code == 2 and "unknown modality 'xray'" in res.output
    m = manifest_csv(tmp_path / "m.csv", "case_id,image,modality", ["a,a.nii.gz,pet"])
    case = run_pipeline(m, tmp_path / "o3", model=bundle, progress=False).cases[0]
    assert not case.ok and "unknown modality 'pet'" in case.error and str(tmp_path / "a.nii.gz") in case.error


def test_evaluate_takes_the_modality_option(tmp_path: Path, make_bundle: Callable[..., Path],
                                            mr_volume: Callable[..., Path], manifest_csv: Callable[..., Path]) -> None:
    mr_volume(tmp_path / "a.nii.gz")
    m = manifest_csv(tmp_path / "m.csv", "case_id,image,split", ["a,a.nii.gz,test"])
    res = CliRunner().invoke(app, ["evaluate", "-m", str(make_bundle()), "--manifest", str(m), "-o",
                                   str(tmp_path / "o"), "--modality", "ct", "-q"])
    assert res.exit_code == 0, res.output
    assert _rows(tmp_path / "o" / "predictions.csv")["a"]["modality_source"] == "run"


def test_qc_image_gets_the_case_modality(tmp_path: Path, make_bundle: Callable[..., Path],
                                         ct_volume: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.report.overlay as overlay

    seen: list[str | None] = []
    real = overlay.qc_png

    def spy(*args: object, **kwargs: object) -> bytes:
        seen.append(kwargs.get("modality"))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(overlay, "qc_png", spy)
    scan = ct_volume(tmp_path / "scan.nii.gz")
    res = run_pipeline(scan, tmp_path / "out", model=make_bundle(overrides=["inference.qc_images=true"]),
                       progress=False)
    assert res.all_ok and seen == ["ct"]
    assert (tmp_path / "out" / "qc" / "scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

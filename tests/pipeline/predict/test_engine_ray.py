"""Ray engine on a local 2-CPU Ray cluster: same outputs as the local engine, a killed worker, --resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from livercad.cli import app
from livercad.config import Config
from livercad.pipeline.bundle import load_bundle
from livercad.pipeline.predict.run import PipelineResult, run_pipeline
from livercad.pipeline.training.orchestrate import PipelineTraining
from livercad.runtime.progress import Progress

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

BROKEN = {"truncated", "empty", "notnifti", "fourd"}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance with 2 CPUs for this module (run_ray uses it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tiny_trained: PipelineTraining, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four phantom volumes, one per stored orientation where possible, plus four broken files."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    images = [Path(r.image) for r in tiny_trained.rows]
    codes = {p: "".join(nib.aff2axcodes(nib.load(p).affine)) for p in images}
    firsts = list({c: p for p, c in reversed(codes.items())}.values())  # first image of each orientation
    picked = (firsts + [p for p in images if p not in firsts])[:4]
    assert len({codes[p] for p in picked}) >= 3, f"phantom cohort lost its mixed orientations: {codes}"
    for p in picked:
        shutil.copy(p, folder / p.name)
    good = picked[0].read_bytes()
    (folder / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "notnifti.nii").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 400)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4)), folder / "fourd.nii.gz")
    return folder


@pytest.fixture(scope="module")
def lean(tiny_bundle: Path) -> Config:
    """The bundle's inference settings without QC images and report (the runs that need not check them)."""
    inference = load_bundle(tiny_bundle).config.inference.model_copy(update={"qc_images": False, "report": False})
    return Config(inference=inference)


@pytest.fixture(scope="module")
def local(tiny_bundle: Path, inputs: Path, lean: Config, tmp_path_factory: pytest.TempPathFactory) -> PipelineResult:
    """The reference: the same inputs through the local engine."""
    return run_pipeline(inputs, tmp_path_factory.mktemp("local") / "out", model=tiny_bundle, config=lean,
                        progress=False, engine="local")


def _ids(folder: Path) -> list[str]:
    return [f.name.removesuffix(".nii.gz").removesuffix(".nii") for f in sorted(folder.iterdir())]


def _table(out: Path, name: str) -> dict[str, dict[str, str]]:
    rows = list(csv.DictReader((out / name).open()))
    assert len({r["case_id"] for r in rows}) == len(rows), f"duplicate rows in {name}"
    return {r["case_id"]: r for r in rows}


def _assert_same_outputs(out: Path, ref: Path, *, qc: Collection[str] = (), broken: set[str] = BROKEN) -> None:
    """Masks bitwise, probabilities within 1e-5, same predictions/failures tables as the reference run.

    ``qc``: the cases whose QC image must have been written.
    """
    preds, ref_preds = _table(out, "predictions.csv"), _table(ref, "predictions.csv")
    assert set(preds) == set(ref_preds) and len(preds) == 4
    for cid, row in preds.items():
        want = ref_preds[cid]
        assert row["predicted_label"] == want["predicted_label"]
        for col in ("prob_normal", "prob_cirrhosis"):
            assert abs(float(row[col]) - float(want[col])) <= 1e-5, (cid, col, row[col], want[col])
        assert float(row["liver_volume_ml"]) == float(want["liver_volume_ml"])
        got, exp = nib.load(out / "masks" / f"{cid}.nii.gz"), nib.load(ref / "masks" / f"{cid}.nii.gz")
        assert np.array_equal(np.asanyarray(got.dataobj), np.asanyarray(exp.dataobj)), cid
        assert np.array_equal(got.affine, exp.affine) and got.get_data_dtype() == exp.get_data_dtype()
        if cid in qc:
            assert (out / "qc" / f"{cid}.png").read_bytes()[:4] == b"\x89PNG"
    failures = {k: v["reason"] for k, v in _table(out, "failures.csv").items()}
    ref_failures = {k: v["reason"] for k, v in _table(ref, "failures.csv").items()}
    assert failures == {k: v for k, v in ref_failures.items() if k in broken}
    assert set(failures) == broken and all(failures.values())


def _busy_worker() -> int | None:
    """Pid of a Ray actor process that is executing ``_Worker.process`` now (Ray sets the process title)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::_Worker.process"):
            return int(pid)
    return None


@pytest.fixture(scope="module")
def ray_run(ray_cluster: None, tiny_bundle: Path, inputs: Path, local: PipelineResult,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``livercad predict --engine ray --resume`` on the inputs, SIGKILLing one worker in the middle of a case.

    The output folder starts with one case finished by the local engine (its record and mask), so the run
    resumes: 7 of the 8 cases go to the Ray workers. One run serves the comparison with the local engine,
    the lost-worker test and the resume test, because every Ray run starts its workers afresh (about 10 CPU
    seconds each for the torch/MONAI imports) and the module must stay within its time budget.
    """
    out = tmp_path_factory.mktemp("ray") / "out"
    seeded = sorted(c.case_id for c in local.cases if c.ok)[-1]
    for sub, name in (("cases", f"{seeded}.json"), ("masks", f"{seeded}.nii.gz")):
        (out / sub).mkdir(parents=True)
        shutil.copy2(local.output_dir / sub / name, out / sub / name)
    seeded_mtime = (out / "masks" / f"{seeded}.nii.gz").stat().st_mtime_ns
    killed: list[int] = []
    reported: list[str] = []
    original = Progress.advance

    def kill_on_first_chance(self: Progress, case_id: str, status: str = "done") -> None:
        reported.append(case_id)
        deadline = time.monotonic() + 3.0
        while not killed and time.monotonic() < deadline:
            pid = _busy_worker()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)  # the other worker, while it processes its case
                killed.append(pid)
            time.sleep(0.01)
        original(self, case_id, status)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Progress, "advance", kill_on_first_chance)
        res = CliRunner().invoke(app, ["predict", "--model", str(tiny_bundle), "-i", str(inputs), "-o", str(out),
                                       "--engine", "ray", "--resume", "--quiet"])
    return {"out": out, "exit_code": res.exit_code, "output": res.output, "killed": killed, "reported": reported,
            "seeded": seeded, "seeded_mtime": seeded_mtime}


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "cases").glob("*.json")}


def test_ray_engine_matches_local_engine_including_broken_files(ray_run: dict[str, Any], inputs: Path,
                                                                 local: PipelineResult) -> None:
    out, ref = ray_run["out"], local.output_dir
    assert ray_run["exit_code"] == 3, ray_run["output"]  # 3: finished, the broken files failed
    _assert_same_outputs(out, ref, qc=set(_ids(inputs)) - BROKEN - {ray_run["seeded"]})  # QC: by the workers
    got, want = _records(out), _records(ref)
    assert sorted(got) == sorted(want) == sorted(_ids(inputs))
    for cid, rec in got.items():
        exp = want[cid]
        same = ("error", "input_path", "predicted_label", "liver_volume_ml", "segmentation_metrics")
        assert {k: rec[k] for k in same} == {k: exp[k] for k in same}, cid
        root = ref if cid == ray_run["seeded"] else out  # the seeded record was copied from the local run
        assert rec["mask_path"] == (str((root / "masks" / f"{cid}.nii.gz").resolve()) if exp["mask_path"] else None)
        assert rec["probabilities"].keys() == exp["probabilities"].keys()
        assert all(abs(rec["probabilities"][k] - exp["probabilities"][k]) <= 1e-5 for k in rec["probabilities"])
    run, ref_run = json.loads((out / "run.json").read_text()), json.loads((ref / "run.json").read_text())
    assert run["timing"]["engine"] == "ray" and ref_run["timing"]["engine"] == "local"
    keys = ("n_ok", "n_failed", "precision", "backend")
    assert {k: run[k] for k in keys} == {k: ref_run[k] for k in keys} and run["backend"]["segmenter"]
    assert (out / "report.html").is_file() and not (out / ".livercad.lock").exists()


def test_killing_a_worker_mid_batch_still_finishes_every_case_once(ray_run: dict[str, Any], inputs: Path) -> None:
    assert ray_run["killed"], "no Ray worker was ever seen processing a case"
    with pytest.raises(ProcessLookupError):
        os.kill(ray_run["killed"][0], 0)  # it really died
    todo = sorted(set(_ids(inputs)) - {ray_run["seeded"]})
    assert sorted(ray_run["reported"]) == todo  # progress: each case to run reported exactly once
    assert sorted(_records(ray_run["out"])) == sorted(_ids(inputs))
    assert not list(ray_run["out"].rglob(".*.tmp*"))  # nothing half-written is left behind
    run = json.loads((ray_run["out"] / "run.json").read_text())
    assert (run["n_ok"], run["n_failed"]) == (4, 4)


def test_resume_with_ray_skips_finished_cases(ray_run: dict[str, Any], inputs: Path) -> None:
    seeded, out = ray_run["seeded"], ray_run["out"]
    assert seeded not in ray_run["reported"]  # the case finished before never went to a worker
    assert (out / "masks" / f"{seeded}.nii.gz").stat().st_mtime_ns == ray_run["seeded_mtime"]
    run = json.loads((out / "run.json").read_text())
    assert (run["timing"]["cases_run"], run["timing"]["cases_resumed"]) == (7, 1)
    assert seeded in _table(out, "predictions.csv")  # the tables are rebuilt from every record


class _Ref:
    def __init__(self, value: object = None, exc: BaseException | None = None) -> None:
        self.value, self.exc = value, exc


class _Method:
    def __init__(self, fn: object) -> None:
        self.remote = fn


class _FakeActor:
    """Stands in for a Ray actor handle: dies (for good) on a poisoned case, or from the start."""

    def __init__(self, poison: frozenset[str] = frozenset(), dead: bool = False) -> None:
        self.poison, self.dead, self.done = poison, dead, []
        self.process, self.ready = _Method(self._process), _Method(self._ready)

    def _process(self, case: dict) -> _Ref:
        row = case["row"]
        if self.dead or row["case_id"] in self.poison:
            self.dead = True
            return _Ref(exc=ray.exceptions.ActorDiedError())
        self.done.append(row["case_id"])
        return _Ref({"case_id": row["case_id"], "input_path": str(row["image"]), "predicted_label": "normal"})

    def _ready(self) -> _Ref:
        return _Ref(exc=ray.exceptions.ActorDiedError()) if self.dead else _Ref(("fp32", None, "host"))


class _FakeRay:
    exceptions = ray.exceptions

    @staticmethod
    def wait(refs: list[_Ref], num_returns: int) -> tuple[list[_Ref], list[_Ref]]:
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref: _Ref) -> object:
        if ref.exc is not None:
            raise ref.exc
        return ref.value


def test_a_worker_lost_for_good_is_replaced_and_only_its_case_fails(tmp_path: Path) -> None:
    from livercad.pipeline.predict.engine_ray import TASK_RETRIES, _drive
    from livercad.pipeline.predict.inputs import file_case
    from livercad.pipeline.predict.outputs import RunFolder

    todo = [file_case(f"c{i}", tmp_path / f"c{i}.nii.gz", "nifti") for i in range(4)]
    first, spare = _FakeActor(poison=frozenset({"c1"})), _FakeActor()
    with RunFolder(tmp_path / "out") as folder, Progress(4, enabled=False) as bar:
        results = _drive(_FakeRay(), [first], lambda: spare, todo, folder, bar)
    assert [r.case_id for r in results] == ["c0", "c1", "c2", "c3"] and bar.done == 4
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error == f"worker lost {TASK_RETRIES + 1} times while processing this case (ActorDiedError)"
    assert first.done == ["c0"] and spare.done == ["c2", "c3"]  # the replacement took over
    assert sorted(p.stem for p in (tmp_path / "out" / "cases").glob("*.json")) == ["c0", "c1", "c2", "c3"]


def test_running_out_of_workers_stops_with_the_finished_cases_recorded(tmp_path: Path) -> None:
    from livercad.pipeline.predict.engine_ray import RayWorkersLostError, _drive
    from livercad.pipeline.predict.inputs import file_case
    from livercad.pipeline.predict.outputs import RunFolder

    todo = [file_case(f"c{i}", tmp_path / f"c{i}.nii.gz", "nifti") for i in range(4)]
    with RunFolder(tmp_path / "out") as folder, Progress(4, enabled=False) as bar:
        with pytest.raises(RayWorkersLostError, match="2 of 4 cases recorded.*--resume"):
            _drive(_FakeRay(), [_FakeActor(poison=frozenset({"c1"}))], lambda: _FakeActor(dead=True), todo, folder,
                   bar)
    assert sorted(p.stem for p in (tmp_path / "out" / "cases").glob("*.json")) == ["c0", "c1"]

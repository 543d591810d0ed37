"""Crash safety (SIGKILL + --resume), one run per folder, no network, determinism of inference."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest

from livercad.pipeline.predict.run import run_pipeline
from livercad.pipeline.training.orchestrate import PipelineTraining

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch_folder(tiny_trained: PipelineTraining, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("batch")
    rows = tiny_trained.rows
    for i in range(8):
        shutil.copy(rows[i % len(rows)].image, folder / f"case{i:02d}.nii.gz")
    return folder


def _start(bundle: Path, inp: Path, out: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "livercad.cli", "predict", "--model", str(bundle), "-i", str(inp),
           "-o", str(out), "--quiet"] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 120) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _records(out: Path) -> int:
    return len(list((out / "cases").glob("*.json"))) if (out / "cases").is_dir() else 0


def test_sigkill_at_several_points_then_resume(tiny_bundle: Path, batch_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # mid-batch: a kill between records, which leaves a stale lock, complete records and nothing half-written
    # (kills before any record and after the first were dropped: each restart costs ~8 s of imports and the
    # suite must stay under 5 minutes; the mid-batch point covers both the stale lock and the resume)
    kill_points = [lambda: _records(out) >= 4]
    for i, point in enumerate(kill_points):
        proc = _start(tiny_bundle, batch_folder, out, resume=i > 0)
        reached = _wait_for(point, proc)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert reached or proc.returncode == 0, proc.stderr.read().decode()[-2000:]
        assert not reached or (out / ".livercad.lock").exists()  # a killed run leaves its lock behind
        # whatever is visible under a final name is complete and valid
        for m in (out / "masks").glob("*.nii.gz") if (out / "masks").is_dir() else []:
            assert nib.load(m).get_fdata().shape
        for rec in (out / "cases").glob("*.json") if (out / "cases").is_dir() else []:
            json.loads(rec.read_text())
    final = _start(tiny_bundle, batch_folder, out, resume=True)
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()[-2000:]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    ids = [r["case_id"] for r in rows]
    assert sorted(ids) == [f"case{i:02d}" for i in range(8)] and len(set(ids)) == len(ids)
    assert _records(out) == 8
    run = json.loads((out / "run.json").read_text())
    assert run["n_ok"] == 8 and run["timing"]["cases_run"] + run["timing"]["cases_resumed"] == 8
    assert not list(out.rglob(".*.tmp*")) and not (out / ".livercad.lock").exists()


def test_a_second_run_into_a_busy_folder_refuses(tiny_bundle: Path, batch_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / ".livercad.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "predict", "--model", str(tiny_bundle),
                           "-i", str(batch_folder), "-o", str(out), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "another livercad run" in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_predict_never_touches_the_network(tiny_bundle: Path, batch_folder: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    res = run_pipeline(batch_folder, tmp_path / "offline", model=tiny_bundle, progress=False)
    assert res.all_ok


def test_inference_is_deterministic(tiny_bundle: Path, batch_folder: Path, tmp_path: Path) -> None:
    files = sorted(batch_folder.glob("*.nii.gz"))[:3]  # three cases: run-to-run equality, not throughput
    a = run_pipeline(files, tmp_path / "a", model=tiny_bundle, progress=False)
    b = run_pipeline(files, tmp_path / "b", model=tiny_bundle, progress=False)
    assert len(a.cases) == 3 and [c.probabilities for c in a.cases] == [c.probabilities for c in b.cases]
    for m in (tmp_path / "a" / "masks").iterdir():
        assert m.read_bytes() == (tmp_path / "b" / "masks" / m.name).read_bytes()
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()

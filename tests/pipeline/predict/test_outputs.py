"""Run folder: lock, records, path confinement, tables."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livercad.errors import InputError
from livercad.pipeline.predict.outputs import (
    LOCK_NAME,
    OutputLockedError,
    RunFolder,
    failure_rows,
    prediction_columns,
    prediction_rows,
    write_csv,
)
from livercad.types import CaseResult


def test_second_run_into_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    with RunFolder(tmp_path / "out"):
        with pytest.raises(OutputLockedError, match="another livercad run"):
            with RunFolder(tmp_path / "out"):
                pass
    assert not (tmp_path / "out" / LOCK_NAME).exists()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with RunFolder(out) as folder:
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert folder.root == out


def test_records_roundtrip_and_unreadable_counts_as_not_done(tmp_path: Path) -> None:
    with RunFolder(tmp_path) as folder:
        r = CaseResult("a", "a.nii.gz", probabilities={"normal": 0.2, "cirrhosis": 0.8}, predicted_label="cirrhosis")
        folder.write_record(r)
        assert folder.read_record("a") == r
        (tmp_path / "cases" / "b.json").write_text('{"case_id": "b", "inp')  # torn write from elsewhere
        assert folder.read_record("b") is None
        assert folder.read_record("missing") is None


@pytest.mark.parametrize("bad", ["../evil", "../../etc/x", "/abs/path"])
def test_outputs_never_leave_the_folder(tmp_path: Path, bad: str) -> None:
    with RunFolder(tmp_path / "out") as folder:
        with pytest.raises(InputError, match="outside the output folder"):
            folder.mask_path(bad)
    assert not (tmp_path / "evil.nii.gz").exists()


def test_tables(tmp_path: Path) -> None:
    ok = CaseResult("a", "a.nii", probabilities={"n": 0.25, "c": 0.75}, predicted_label="c", liver_volume_ml=1500.0)
    bad = CaseResult("b", "b.nii", error="b.nii: empty file")
    rows = prediction_rows([ok, bad], ["n", "c"])
    assert [r["case_id"] for r in rows] == ["a"] and rows[0]["prob_c"] == 0.75
    path = write_csv(tmp_path / "p.csv", rows, ["case_id", "prob_n", "prob_c", "dice"])
    got = list(csv.DictReader(path.open()))
    assert got == [{"case_id": "a", "prob_n": "0.25", "prob_c": "0.75", "dice": ""}]
    assert failure_rows([ok, bad]) == [{"case_id": "b", "input": "b.nii", "reason": "b.nii: empty file"}]


def test_prediction_columns_and_new_fields(tmp_path: Path) -> None:
    r = CaseResult("a", "a.nii", probabilities={"n": 0.4, "c": 0.6}, predicted_label="c",
                   verdict_status="out-of-domain", modality="ct", modality_source="intensity-rule",
                   image_domain="real", liver_mean=61.5, liver_median=60.0, liver_sd=9.25, intensity_unit="HU",
                   liver_volume_ml=1500.0)
    cols = prediction_columns(["n", "c"])
    assert cols[:5] == ["case_id", "predicted_label", "verdict_status", "prob_n", "prob_c"]
    assert {"liver_mean", "liver_median", "liver_sd", "intensity_unit", "modality", "modality_source",
            "image_domain"} <= set(cols)
    got = list(csv.DictReader(write_csv(tmp_path / "p.csv", prediction_rows([r], ["n", "c"]), cols).open()))[0]
    assert (got["verdict_status"], got["modality_source"], got["liver_sd"], got["input"]) == (
        "out-of-domain", "intensity-rule", "9.25", "a.nii")
    seg_only = prediction_columns([])
    assert not any(c.startswith("prob_") for c in seg_only)


def test_records_of_older_runs_still_read(tmp_path: Path) -> None:
    with RunFolder(tmp_path) as folder:
        (tmp_path / "cases").mkdir()
        (tmp_path / "cases" / "old.json").write_text(json.dumps({"case_id": "old", "input_path": "o.nii"}))
        old = folder.read_record("old")
        assert old is not None and old.ok and old.verdict_status is None and old.modality is None

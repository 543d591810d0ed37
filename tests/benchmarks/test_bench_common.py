"""Benchmark results are written whole and never replace an earlier result."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_write_result_never_replaces_an_earlier_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from bench_common import write_result

    day = dt.date.today().isoformat()
    first = write_result(json.dumps({"run": 1}), "accept_stage2_n600", tmp_path)
    second = write_result(json.dumps({"run": 2}), "accept_stage2_n600", tmp_path)
    third = write_result(json.dumps({"run": 3}), "accept_stage2_n600", tmp_path)
    assert [p.name for p in (first, second, third)] == [
        f"{day}_accept_stage2_n600.json", f"{day}_accept_stage2_n600_2.json", f"{day}_accept_stage2_n600_3.json"]
    assert [json.loads(p.read_text())["run"] for p in (first, second, third)] == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (first, second, third))  # no temp left

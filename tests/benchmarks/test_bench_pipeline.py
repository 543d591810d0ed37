"""bench_pipeline's ``predict`` section: ``livercad predict`` itself, timed per case, or the failures named."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_predict_section_times_each_case_or_names_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("bench_pipeline", None)
    import bench_pipeline

    paths = bench_pipeline.make_volumes(1, (48, 48, 12), tmp_path)
    out = bench_pipeline.predict_section(paths, tmp_path, model_seconds=0.5)
    assert len(out["case_seconds"]) == 1 and out["case_seconds"][0] > 0
    assert out["over_model"] == pytest.approx(out["mean_case_seconds"] / 0.5, abs=2e-3)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume")
    failed = bench_pipeline.predict_section([*paths, broken], tmp_path / "again", model_seconds=0.5)
    assert set(failed) == {"error"} and "broken.nii.gz" in failed["error"]

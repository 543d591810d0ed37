"""bench_pipeline's ``predict`` section and bench_predict: ``livercad predict`` itself, timed per case."""

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
    out = bench_pipeline.predict_section(paths, tmp_path)
    assert len(out["case_seconds"]) == 1 and out["case_seconds"][0] > out["model_seconds"] > 0
    assert out["over_model"] == pytest.approx(out["mean_case_seconds"] / out["model_seconds"], rel=0.01)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume")
    failed = bench_pipeline.predict_section([*paths, broken], tmp_path / "again")
    assert set(failed) == {"error"} and "broken.nii.gz" in failed["error"]


def test_bench_predict_times_livercad_predict_per_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_predict

    out = bench_predict.main(["--volumes", "1", "--shape", "48x48x12", "--reps", "2", "--no-save"])
    assert len(out["case_seconds"]) == 2 and all(len(run) == 1 and run[0] > 0 for run in out["case_seconds"])
    assert out["mean_case_seconds"] == pytest.approx(sum(r[0] for r in out["case_seconds"]) / 2, abs=1e-3)
    assert out["livercad"].endswith("livercad") and out["shape"] == [48, 48, 12]
    assert len(out["model_seconds"]) == 2 and 0 < out["mean_model_seconds"] < out["mean_case_seconds"]
    assert out["over_model"] == pytest.approx(out["mean_case_seconds"] / out["mean_model_seconds"], rel=0.01)


def test_model_info_of_a_random_segmenter_has_no_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--random-weights`` (the README's smoke run) used to stop here: a random segmenter has no checkpoint."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_pipeline

    from livercad.segment.infer import Segmenter

    info = bench_pipeline.model_info(Segmenter.random(image_size=32), {"source": "random", "path": None})
    assert info["sha256"] is None and info["weights"] == "random" and info["image_size"] == 32

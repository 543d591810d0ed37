"""accept_stage2's seed repeats: one stage-1 output, stage 2 once per seed, the spread summarised."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_seeds_run_stage2_per_seed_and_summarise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import accept_stage2

    calls: list[tuple[str, int]] = []

    def fake_task(stage1: Any, cfg: Any, positive: str, work: Path, seed: int) -> dict[str, Any]:
        calls.append((positive, seed))
        auc = {3: 0.8, 4: 0.9, 5: 0.7}[seed]
        return {"seed": seed, "train_s": 1.0, "epochs": 2, "test": {"roc_auc": {"value": auc}}}

    monkeypatch.setattr(accept_stage2, "_task", fake_task)
    cfg = SimpleNamespace(seed=3)
    out = accept_stage2._seeded([], cfg, "cirrhosis", tmp_path, 3)
    assert calls == [("cirrhosis", 3), ("cirrhosis", 4), ("cirrhosis", 5)]
    assert out["seed"] == 3 and out["test"]["roc_auc"]["value"] == 0.8  # the first seed is the reported run
    assert [s["seed"] for s in out["seeds"]] == [3, 4, 5]
    assert out["roc_auc_mean"] == pytest.approx(0.8) and (out["roc_auc_min"], out["roc_auc_max"]) == (0.7, 0.9)
    one = accept_stage2._seeded([], cfg, "steatosis", tmp_path, 1)
    assert "seeds" not in one and one["seed"] == 3

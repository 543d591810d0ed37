"""Determinism of training: same data, config and seed on CPU -> identical weights, predictions and
metrics.json. Both runs are capped by steps/epochs with a budget far from binding: the wall-clock
budget (``max_minutes``) is the one knob that can make two runs differ (it may stop at another step or
anneal the LR by time; the history records that as ``lr_schedule: time``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from livercad.config import load_config
from livercad.pipeline.predict.run import run_pipeline
from livercad.pipeline.training.orchestrate import train_pipeline
from livercad.runtime.checkpoint import load_checkpoint
from tests.conftest import TINY

pytestmark = pytest.mark.slow

MICRO = [*TINY, "data.phantom.n=6", "data.phantom.shape=[40, 40, 8]", "preprocess.image_size=32",
         "segment.model.encoder=tu-test_resnet", "segment.train.max_minutes=60",
         "classify.backbone=test_resnet", "classify.image_size=32", "classify.train.max_minutes=60"]
CHECKPOINTS = ("work/segment/segmenter.pt", "work/classify/classifier.pt")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    roots = [tmp_path_factory.mktemp(f"train{i}") for i in range(2)]
    for root in roots:
        train_pipeline(load_config(None, MICRO), root, progress=False)
    return roots


def _no_clock(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_two_trainings_give_identical_weights(two_runs: list[Path]) -> None:
    for ckpt in CHECKPOINTS:
        sa, sb = (load_checkpoint(r / ckpt)[0] for r in two_runs)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), ckpt
    seg_a, seg_b = (load_checkpoint(r / CHECKPOINTS[0])[1]["history"] for r in two_runs)
    assert seg_a["lr_schedule"] == seg_b["lr_schedule"] == "steps"  # the clock never drove the schedule
    assert seg_a["stopped_by"] == "max_epochs" and _no_clock(seg_a["per_epoch"]) == _no_clock(seg_b["per_epoch"])
    cls_a, cls_b = (load_checkpoint(r / CHECKPOINTS[1])[1]["history"] for r in two_runs)
    assert _no_clock(cls_a) == _no_clock(cls_b)


def test_two_trainings_give_identical_predictions_and_metrics(two_runs: list[Path], tmp_path: Path) -> None:
    manifest = two_runs[0] / "data" / "manifest.csv"
    outs = [tmp_path / "a", tmp_path / "b"]
    res = [run_pipeline(manifest, out, model=root / "model", progress=False)
           for root, out in zip(two_runs, outs, strict=True)]
    assert res[0].all_ok and len(res[0].cases) == 6
    assert [c.probabilities for c in res[0].cases] == [c.probabilities for c in res[1].cases]
    for m in (outs[0] / "masks").iterdir():
        assert m.read_bytes() == (outs[1] / "masks" / m.name).read_bytes()
    a, b = ((o / "metrics.json").read_text() for o in outs)
    assert a == b and '"dice"' in a and '"roc_auc"' in a  # identical and not vacuous
    pa, pb = ((o / "predictions.csv").read_text().replace(str(o), "OUT") for o in outs)  # rows name their mask
    assert pa == pb and pa.count("\n") == 7

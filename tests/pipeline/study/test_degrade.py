"""Mask degradation to a target Dice: accuracy of the bisection, base choice, case copies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livercad.errors import ConfigError, InputError
from livercad.metrics.segmentation import dice
from livercad.pipeline.study.degrade import OPS, _dice, degrade_case, degrade_to_dice


def _blob(z: int = 24, s: int = 64) -> np.ndarray:
    """An ellipsoid liver: slice areas taper towards both ends (fine steps for slice dropping)."""
    zz, yy, xx = np.mgrid[:z, :s, :s]
    return ((((zz - z / 2) / (z / 2.2)) ** 2 + ((yy - 30) / 20) ** 2 + ((xx - 28) / 24) ** 2) < 1).astype(np.uint8)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("target", [0.95, 0.9, 0.8, 0.7])
def test_hits_target_dice(op: str, target: float) -> None:
    gt = _blob()
    d = degrade_to_dice(gt, gt, target, op=op, seed=3)
    achieved = dice(d.mask, gt.astype(bool))  # independent (MONAI) Dice of the returned mask
    assert achieved == pytest.approx(d.dice, abs=1e-6)
    assert abs(achieved - target) < 0.03
    assert d.strength > 0 and d.base == "pred"  # pred == gt here: Dice 1 >= target


def test_degrades_the_prediction_when_it_is_good_enough() -> None:
    gt = _blob()
    pred = gt.copy()
    pred[:, :, 45:] = 0  # cut the lateral tip: Dice ~0.95
    d_pred = dice(pred, gt)
    assert 0.9 < d_pred < 0.99
    low = degrade_to_dice(pred, gt, 0.8, op="erode")
    assert low.base == "pred" and abs(low.dice - 0.8) < 0.03
    assert not (low.mask & ~pred.astype(bool)).any()  # eroding the prediction stays inside it
    high = degrade_to_dice(pred, gt, 0.995, op="dilate")
    assert high.base == "gt"  # a prediction cannot be degraded up to a higher Dice


def test_target_one_is_ground_truth_and_ops_are_monotone() -> None:
    gt = _blob()
    d = degrade_to_dice(gt, gt, 1.0, op="shift")
    assert d.dice == 1.0 and np.array_equal(d.mask, gt.astype(bool))
    erode = [degrade_to_dice(gt, gt, t, op="erode").mask.sum() for t in (0.95, 0.8, 0.7)]
    dilate = [degrade_to_dice(gt, gt, t, op="dilate").mask.sum() for t in (0.95, 0.8, 0.7)]
    assert erode[0] > erode[1] > erode[2] and dilate[0] < dilate[1] < dilate[2]


def test_fast_dice_equals_monai() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 16, 16)) > 0.5, rng.random((5, 16, 16)) > 0.3
    assert _dice(a, b) == pytest.approx(dice(a, b), abs=1e-6)


def test_degrade_case_keeps_type_and_replaces_prob() -> None:
    from livercad.types import CaseSlices

    gt = torch.from_numpy(_blob(8, 32))
    case = CaseSlices("c1", "p1", 1, torch.rand(8, 32, 32), gt.half(), gt.clone(), gt.clone())
    new, info = degrade_case(case, 0.8, op="dilate")
    assert new.mask.dtype == torch.uint8 and new.prob.dtype == torch.float16
    assert torch.equal(new.prob.float(), new.mask.float()) and not torch.equal(new.mask, case.mask)
    assert torch.equal(case.mask, gt)  # the original is untouched
    assert abs(info.dice - 0.8) < 0.06


def test_errors() -> None:
    gt = _blob(6, 16)
    with pytest.raises(ConfigError, match="unknown op"):
        degrade_to_dice(gt, gt, 0.8, op="blur")
    with pytest.raises(InputError, match="empty"):
        degrade_to_dice(gt, np.zeros_like(gt), 0.8)
    with pytest.raises(InputError, match="target"):
        degrade_to_dice(gt, gt, 0.0)
    from livercad.types import CaseSlices

    t = torch.from_numpy(gt)
    with pytest.raises(InputError, match="ground-truth"):
        degrade_case(CaseSlices("c", "p", 0, t.float(), t.half(), t, None), 0.8, op="erode")

"""Slice selection, aggregation (hand-made logits) and case prediction against a manual reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from livercad.classify.data import case_inputs, select_slices
from livercad.classify.infer import (
    Classifier,
    aggregate_logits,
    predict_case,
    predict_cases,
    slices_used,
)
from livercad.classify.model import build_classifier
from livercad.errors import ConfigError, InputError
from livercad.types import CaseSlices

LOGITS = torch.tensor([[0.0, 4.0], [2.0, 0.0], [1.0, 1.0], [3.0, -1.0]])
AREAS = torch.tensor([1.0, 5.0, 2.0, 0.0])


def _case(areas: list[int], s: int = 16, gt: bool = True) -> CaseSlices:
    """A case whose slice k has a liver square of ``areas[k]`` pixels (perfect squares)."""
    z = len(areas)
    mask = torch.zeros(z, s, s, dtype=torch.uint8)
    for k, a in enumerate(areas):
        side = int(round(a ** 0.5))
        mask[k, 2:2 + side, 3:3 + side] = 1
    image = torch.linspace(-1, 1, z * s * s).reshape(z, s, s)
    return CaseSlices("c", "p", 1, image.half(), mask.half(), mask, mask.clone() if gt else None, (1.0, 1.0, 1.0))


def _clf(aggregation: str = "area-weighted", region: str = "mask", top_k: int = 2) -> Classifier:
    torch.manual_seed(0)
    net = build_classifier("resnet18", num_classes=2, in_channels=4 if region == "mask-channel" else 3)
    meta = {"classes": ["normal", "cirrhosis"], "region": region, "image_size": 32, "aggregation": aggregation,
            "top_k": top_k, "min_liver_fraction": 0.05, "crop_margin": 0.1}
    return Classifier(net, meta, precision="fp32", device="cpu")


def test_aggregations_on_hand_made_logits() -> None:
    # area-weighted: (1*[0,4] + 5*[2,0] + 2*[1,1] + 0*[3,-1]) / 8 = [12/8, 6/8]
    assert aggregate_logits(LOGITS, AREAS, "area-weighted").tolist() == [1.5, 0.75]
    assert aggregate_logits(LOGITS, AREAS, "mean").tolist() == [1.5, 1.0]
    assert aggregate_logits(LOGITS, AREAS, "max").tolist() == [3.0, 4.0]
    assert aggregate_logits(LOGITS, AREAS, "top-k", top_k=2).tolist() == [1.5, 0.5]  # slices 1 and 2
    assert aggregate_logits(LOGITS, AREAS, "single-slice").tolist() == [2.0, 0.0]
    assert aggregate_logits(LOGITS, AREAS, "top-k", top_k=10).tolist() == [1.5, 1.0]  # k > N: all
    assert aggregate_logits(LOGITS, torch.zeros(4), "area-weighted").tolist() == [1.5, 1.0]  # no area: mean


def test_slices_used_and_unknown_aggregation() -> None:
    assert sorted(slices_used(AREAS, "top-k", 3).tolist()) == [0, 1, 2]
    assert slices_used(AREAS, "single-slice").tolist() == [1]
    assert slices_used(AREAS, "mean").tolist() == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="did you mean 'top-k'"):
        slices_used(AREAS, "topk")


def test_select_slices_threshold_and_fallbacks() -> None:
    case = _case([0, 16, 4, 25, 1])
    sel = select_slices(case, 0.05)  # >= 12.8 px of 256
    assert sel.index.tolist() == [1, 3] and sel.areas.tolist() == [16.0, 25.0] and sel.region_override is None
    small = select_slices(_case([0, 4, 9, 1]), 0.05)  # none qualifies: the largest
    assert small.index.tolist() == [2] and small.areas.tolist() == [9.0]
    empty = select_slices(_case([0] * 10), 0.05)  # middle 20 %, unmasked
    assert empty.index.tolist() == [4, 5] and empty.region_override == "full"
    with pytest.raises(InputError, match="ground-truth"):
        select_slices(_case([4], gt=False), 0.05, use_gt=True)


def test_empty_mask_falls_back_to_full_region() -> None:
    case = _case([0] * 5)
    x, areas = case_inputs(case, region="mask", size=16, min_fraction=0.05)
    ref, _ = case_inputs(case, region="full", size=16, min_fraction=0.05)
    assert torch.equal(x, ref) and areas.tolist() == [1.0]


def test_predict_case_matches_manual_reference() -> None:
    clf = _clf()
    case = _case([0, 16, 36, 25, 0])
    x, areas = case_inputs(case, region="mask", size=32, margin=0.1, min_fraction=0.05)
    with torch.no_grad():
        logits = clf.model(x)
    expected = torch.softmax((logits * (areas / areas.sum())[:, None]).sum(0), 0)
    got = predict_case(clf, case)
    assert got.shape == (2,) and got.sum() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(torch.as_tensor(got), expected, atol=1e-5)
    single = predict_case(clf, case, aggregation="single-slice")
    assert torch.allclose(torch.as_tensor(single), torch.softmax(logits[1], 0), atol=1e-5)  # 36 px slice


def test_single_slice_runs_the_network_once_per_case() -> None:
    clf = _clf("single-slice")
    rows: list[int] = []
    clf.model.register_forward_hook(lambda m, inp, out: rows.append(inp[0].shape[0]))
    predict_case(clf, _case([16, 36, 25, 16]))
    assert rows == [1]


def test_two_d_case_and_batch_prediction() -> None:
    clf = _clf("top-k", region="mask-channel")
    us = _case([49])  # Z = 1: an ultrasound frame
    probs = predict_cases(clf, [us, _case([0, 16, 36])])
    assert probs.shape == (2, 2) and abs(probs.sum(1) - 1).max() < 1e-5
    assert predict_cases(clf, []).shape == (0, 2)


def test_bf16_precision_runs() -> None:
    base = _clf()
    clf = Classifier(base.model, base.meta, precision="bf16", device="cpu")
    assert clf.precision == "bf16"
    p = predict_case(clf, _case([0, 36, 25]))
    assert abs(p.sum() - 1) < 1e-3
    with pytest.raises(ConfigError, match="precision"):
        Classifier(base.model, base.meta, precision="fp8")


def test_load_refuses_a_foreign_checkpoint(tmp_path: Path) -> None:
    from livercad.errors import CheckpointError
    from livercad.runtime.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "seg.pt", {"w": torch.zeros(1)}, {"arch": "Unet"})
    with pytest.raises(CheckpointError, match="not a livercad classifier"):
        Classifier.load(path)


def test_a_multi_image_case_gives_each_image_s_slice_stack_and_must_match_the_classifier() -> None:
    from dataclasses import replace

    from livercad.classify.data import case_images

    one = _case([16, 25, 36])
    two = replace(one, image=torch.stack([one.image, -one.image], dim=1), images=("image", "image_arterial"))
    x, _ = case_inputs(two, region="full", size=16)
    x1, _ = case_inputs(one, region="full", size=16)
    assert tuple(x.shape) == (3, 6, 16, 16) and torch.equal(x[:, :3], x1) and torch.equal(x[:, 3:], -x1)
    assert case_images([two, two]) == ("image", "image_arterial")
    with pytest.raises(InputError, match="different images"):
        case_images([one, two])
    torch.manual_seed(0)
    net = build_classifier("resnet18", num_classes=2, in_channels=6)
    meta = {"classes": ["normal", "cirrhosis"], "region": "mask", "image_size": 32, "in_channels": 6,
            "images": ["image", "image_arterial"]}
    clf = Classifier(net, meta, precision="fp32", device="cpu")
    assert predict_case(clf, two).shape == (2,)
    with pytest.raises(InputError, match="case 'c': images image differ from the classifier's image, image_arterial"):
        predict_case(clf, one)

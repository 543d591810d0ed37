"""Grad-CAM saliency and the inside-liver attention fraction."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from livercad.classify.infer import Classifier
from livercad.classify.model import build_classifier
from livercad.classify.regions import liver_bbox
from livercad.pipeline.study.saliency import case_saliency, grad_cam, inside_fraction, target_layer
from livercad.types import CaseSlices


def test_fraction_hand_made_maps() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[2:6, 2:6] = 1
    heat = np.zeros((10, 10))
    heat[3:5, 3:5] = 2.0  # entirely inside
    assert inside_fraction(heat, mask) == pytest.approx(1.0)
    heat[8, 8] = 8.0  # 8 of 16 units outside
    assert inside_fraction(heat, mask) == pytest.approx(0.5)
    heat[0, 0] = -100.0  # negative saliency is not attention
    assert inside_fraction(heat, mask) == pytest.approx(0.5)
    assert np.isnan(inside_fraction(np.zeros((10, 10)), mask))
    rng = np.random.default_rng(1)
    f = inside_fraction(rng.random((10, 10)), rng.random((10, 10)) > 0.5)
    assert 0.0 <= f <= 1.0


def _manual_grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Textbook Grad-CAM with plain hooks: ReLU(sum_c mean(dY/dA_c) A_c), bilinear upsampling."""
    store: dict[str, torch.Tensor] = {}
    h = layer.register_forward_hook(lambda _m, _i, o: store.__setitem__("a", o))
    x = x.clone().requires_grad_(True)
    logits = net(x)
    h.remove()
    act = store["a"]
    grad = torch.autograd.grad(logits[0, logits[0].argmax()], act)[0]
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
    return nn.functional.interpolate(cam, size=x.shape[2:], mode="bilinear").detach().numpy()[:, 0]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return build_classifier("resnet18", num_classes=2, strategy="frozen").eval()


def test_grad_cam_matches_a_manual_implementation_on_resnet18(resnet18: nn.Module) -> None:
    net = resnet18
    x = torch.rand(1, 3, 64, 64)
    layer = target_layer(net, x)
    assert layer == "backbone.layer2"  # 64 px: layer2 is 8x8, layer3 4x4 (too coarse)
    heat = grad_cam(net, x)
    ref = _manual_grad_cam(net, net.get_submodule(layer), x)
    assert heat.shape == (1, 64, 64) and (heat >= 0).all() and heat.max() > 0
    np.testing.assert_allclose(heat, ref, rtol=1e-4, atol=1e-6 * float(ref.max()))
    assert all(p.grad is None for p in net.parameters())  # the model itself was not touched
    assert target_layer(net) == "backbone.layer4"  # without an input: the named last stage


def test_fallback_to_last_conv() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    assert target_layer(net) == "2"
    assert grad_cam(net, torch.rand(2, 1, 12, 12)).shape == (2, 12, 12)


def _case() -> CaseSlices:
    m = torch.zeros(5, 32, 32, dtype=torch.uint8)
    m[1:4, 8:20, 10:22] = 1
    return CaseSlices("c1", "p1", 1, torch.rand(5, 32, 32), m.half(), m, m.clone())


@pytest.mark.parametrize("region", ["mask", "crop"])
def test_case_saliency_maps_back_to_model_space(region: str, resnet18: nn.Module) -> None:
    net = copy.deepcopy(resnet18)  # Classifier moves the model to channels-last
    meta = {"classes": ["a", "b"], "region": region, "image_size": 64, "crop_margin": 0.1}
    clf = Classifier(net, meta, precision="fp32", device="cpu")
    case = _case()
    sal = case_saliency(clf, case)
    assert sal.heat.shape == (32, 32) and sal.slice_index in (1, 2, 3)
    assert np.isnan(sal.fraction) or 0.0 <= sal.fraction <= 1.0
    if region == "crop":  # nothing outside the liver box: the model never saw it
        r0, r1, c0, c1 = liver_bbox(case.mask[1:4], 0.1)
        outside = np.ones((32, 32), bool)
        outside[r0:r1, c0:c1] = False
        assert sal.heat[outside].sum() == 0 and sal.heat.sum() > 0


def test_gradient_input_matches_autograd(resnet18: nn.Module) -> None:
    from livercad.pipeline.study.saliency import gradient_input

    x = torch.rand(2, 3, 64, 64)
    heat = gradient_input(resnet18, x)
    assert all(p.grad is None for p in resnet18.parameters())  # a copy ran backward, not the model
    for i in range(2):
        xi = x[i:i + 1].clone().requires_grad_(True)
        out = resnet18.eval()(xi)
        out[0, int(out.argmax())].backward()
        ref = ((xi - xi.amin(dim=(2, 3), keepdim=True)) * xi.grad).sum(1)[0].abs().detach().numpy()
        np.testing.assert_allclose(heat[i], ref, rtol=1e-4, atol=1e-7)


def test_gradient_input_gives_a_masked_arm_no_attention_outside_the_liver(resnet18: nn.Module) -> None:
    case = _case()
    fractions = {}
    for region in ("mask", "full"):
        meta = {"classes": ["a", "b"], "region": region, "image_size": 32, "crop_margin": 0.1}
        clf = Classifier(copy.deepcopy(resnet18), meta, precision="fp32", device="cpu")
        fractions[region] = case_saliency(clf, case, method="gradient-input").fraction
        assert case_saliency(clf, case, method="gradcam").heat.shape == (32, 32)
    assert fractions["mask"] == pytest.approx(1.0)  # the input is the background value outside the liver
    assert fractions["full"] < 0.9  # the liver covers 14 % of the slice; the full arm sees the rest

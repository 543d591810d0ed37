"""Classifier factory: backbones by name, head, input channels, strategies, weights provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from livercad.classify.backbones import TORCHVISION
from livercad.classify.model import build_classifier, param_groups, parse_strategy
from livercad.errors import CheckpointError, ConfigError


def _bn_modes(net: nn.Module, prefix: str) -> set[bool]:
    return {m.training for n, m in net.backbone.named_modules()
            if n.startswith(prefix) and isinstance(m, nn.BatchNorm2d)}


def test_required_backbones_are_registered() -> None:
    for name in ("resnet18", "resnet34", "resnet50", "vgg16_bn", "inception_v3", "densenet121", "efficientnet_b0"):
        assert name in TORCHVISION


@pytest.mark.parametrize("name,features", [("resnet18", 512), ("efficientnet_b0", 1280)])
def test_head_replaced_for_k_classes(name: str, features: int) -> None:
    net = build_classifier(name, num_classes=3)
    assert net.head.in_features == features and net.head.out_features == 3
    assert net.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert net.weights["source"] == "random"


def test_timm_fallback_with_extra_channel() -> None:
    net = build_classifier("resnet10t", num_classes=2, in_channels=4)
    assert net.family == "timm" and len(net.stages) == 5
    assert net.eval()(torch.zeros(1, 4, 32, 32)).shape == (1, 2)


def test_extra_channel_keeps_rgb_kernels_and_adds_their_mean() -> None:
    torch.manual_seed(0)
    ref = build_classifier("resnet18", num_classes=2, in_channels=3)
    torch.manual_seed(0)
    net = build_classifier("resnet18", num_classes=2, in_channels=4)
    w3, w4 = ref.backbone.conv1.weight, net.backbone.conv1.weight
    assert w4.shape[1] == 4
    assert torch.equal(w4[:, :3], w3) and torch.allclose(w4[:, 3], w3.mean(1))


def test_strategies_set_trainable_parameters() -> None:
    frozen = build_classifier("resnet18", num_classes=2, strategy="frozen")
    assert frozen.trainable_parameter_names() == ["head.weight", "head.bias"]
    partial = build_classifier("resnet18", num_classes=2, strategy="partial:1")
    names = partial.trainable_parameter_names()
    assert names and all(n.startswith(("backbone.layer4.", "head.")) for n in names)
    assert any(n.startswith("backbone.layer4.") for n in names)
    for strategy in ("finetune", "scratch"):
        net = build_classifier("resnet18", num_classes=2, strategy=strategy)
        assert len(net.trainable_parameter_names()) == len(list(net.parameters()))


def test_frozen_parts_keep_batchnorm_in_eval_mode() -> None:
    frozen = build_classifier("resnet18", num_classes=2, strategy="frozen").train()
    assert not any(m.training for m in frozen.backbone.modules()) and frozen.head.training
    partial = build_classifier("resnet18", num_classes=2, strategy="partial:1").train()
    assert _bn_modes(partial, "layer1") == {False} and _bn_modes(partial, "layer4") == {True}
    fine = build_classifier("resnet18", num_classes=2, strategy="finetune").train()
    assert _bn_modes(fine, "") == {True}


def test_param_groups_scale_backbone_lr() -> None:
    fine = build_classifier("resnet18", num_classes=2, strategy="finetune")
    groups = param_groups(fine, 1e-3, 0.1)
    assert [g["name"] for g in groups] == ["head", "backbone"]
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(fine.parameters()))
    scratch = build_classifier("resnet18", num_classes=2, strategy="scratch")
    assert [g["lr"] for g in param_groups(scratch, 1e-3, 0.1)] == [1e-3, 1e-3]
    frozen = build_classifier("resnet18", num_classes=2, strategy="frozen")
    assert [g["name"] for g in param_groups(frozen, 1e-3, 0.1)] == ["head"]


def test_weights_from_file_are_loaded_with_provenance(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    net = build_classifier("resnet18", weights=str(path), num_classes=2, strategy="finetune")
    assert torch.equal(net.backbone.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    assert torch.equal(net.backbone.bn1.running_var, src.bn1.running_var)
    assert net.weights["source"] == "file" and len(net.weights["sha256"]) == 64
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="do not fit"):
        build_classifier("resnet18", weights=str(bad), num_classes=2)


def test_imagenet_offline_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIVERCAD_WEIGHTS_DIR", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("LIVERCAD_OFFLINE", "1")  # never download in tests (see tests/runtime/test_weights_download.py)
    with pytest.raises(CheckpointError, match="not available offline"):
        build_classifier("resnet18", weights="imagenet", num_classes=2)


@pytest.mark.parametrize("kwargs,match", [
    ({"backbone": "resnet35"}, "did you mean 'resnet34'"),
    ({"backbone": "resnet18", "strategy": "froze"}, "did you mean 'frozen'"),
    ({"backbone": "resnet18", "strategy": "partial:0"}, "partial:N"),
    ({"backbone": "resnet18", "strategy": "partial:6"}, "asks for 6 stages but resnet18 has 5"),
    ({"backbone": "resnet18", "strategy": "scratch", "weights": "imagenet"}, "weights: none"),
    ({"backbone": "inception_v3", "image_size": 64}, "at least 75 px"),
])
def test_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_classifier(num_classes=2, **kwargs)


def test_parse_strategy() -> None:
    assert parse_strategy("partial:3") == ("partial", 3)
    assert parse_strategy("finetune") == ("finetune", None)


def test_a_stage1_segmenter_checkpoint_initialises_a_resnet_backbone(tmp_path: Path) -> None:
    from livercad.config import SegmentModelConfig
    from livercad.runtime.checkpoint import save_checkpoint
    from livercad.segment.model import build_segmenter

    torch.manual_seed(3)
    seg = build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none",
                                             decoder_channels=[32, 16, 16, 8, 8]))
    path = save_checkpoint(tmp_path / "segmenter.pt", seg.state_dict(), {"kind": "segmenter"})
    enc = seg.encoder.state_dict()
    net = build_classifier("resnet18", weights=str(path), num_classes=2, strategy="finetune")
    own = net.backbone.state_dict()
    assert torch.equal(own["conv1.weight"], enc["conv1.weight"])
    assert torch.equal(own["layer4.1.bn2.running_mean"], enc["layer4.1.bn2.running_mean"])
    assert net.weights["source"] == "file" and net.weights["sha256"]
    assert net.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(CheckpointError, match="resnet34.*do not fit"):  # a different depth is refused
        build_classifier("resnet34", weights=str(path), num_classes=2)

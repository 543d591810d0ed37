"""Stage-2 backbones by name: torchvision (:data:`TORCHVISION`) or timm, weights resolved offline.

Weights ``none | imagenet | <path>`` are resolved by :func:`livercad.runtime.weights.resolve_weights` and
loaded into the *original* architecture before the head is removed, so provenance is exact. The path may
be a stage-1 ``segmenter.pt``: its smp ResNet encoder then initialises a ResNet backbone of the same depth
(:func:`stage1_encoder`). Extra input channels (``mask-channel`` -> 4) patch the first convolution
(:func:`patch_first_conv`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from livercad.errors import CheckpointError, ConfigError, did_you_mean
from livercad.runtime.weights import resolve_weights

logger = logging.getLogger(__name__)


def _seq(prefix: str, start: int, stop: int) -> tuple[str, ...]:
    return tuple(f"{prefix}.{i}" for i in range(start, stop))


@dataclass(frozen=True)
class _TvSpec:
    linear: str  # the final nn.Linear (gives the feature size)
    strip: str  # the module replaced by Identity (the linear, or the Sequential holding it)
    first_conv: str
    stages: tuple[tuple[str, ...], ...]  # input -> output
    kwargs: dict[str, Any] = field(default_factory=dict)
    min_size: int = 32


_RESNET_STAGES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))
_VGG_BLOCKS = ((0, 7), (7, 14), (14, 24), (24, 34), (34, 44))
_DENSE = tuple((f"features.denseblock{i}", f"features.transition{i}") for i in (1, 2, 3))

TORCHVISION: dict[str, _TvSpec] = {
    **{n: _TvSpec("fc", "fc", "conv1", _RESNET_STAGES) for n in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "vgg16_bn": _TvSpec("classifier.6", "classifier.6", "features.0",
                        tuple(_seq("features", a, b) for a, b in _VGG_BLOCKS) + (("classifier",),)),
    "inception_v3": _TvSpec(
        "fc", "fc", "Conv2d_1a_3x3.conv",
        (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"),
         ("Mixed_5b", "Mixed_5c", "Mixed_5d"), tuple(f"Mixed_6{c}" for c in "abcde"),
         ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
        {"aux_logits": False, "init_weights": True, "transform_input": False}, min_size=75),
    "densenet121": _TvSpec("classifier", "classifier", "features.conv0",
                           (("features.conv0", "features.norm0"), *_DENSE,
                            ("features.denseblock4", "features.norm5"))),
    "efficientnet_b0": _TvSpec("classifier.1", "classifier", "features.0.0",
                               tuple((f"features.{i}",) for i in range(9))),
}


def patch_first_conv(model: nn.Module, path: str, in_channels: int) -> None:
    """Give the first convolution ``in_channels`` inputs: RGB kernels kept, extra channels their mean."""
    old = model.get_submodule(path)
    if not isinstance(old, nn.Conv2d):
        raise ConfigError(f"cannot adapt input channels: '{path}' is {type(old).__name__}, not Conv2d")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, old.bias is not None, old.padding_mode)
    with torch.no_grad():
        w = old.weight
        if in_channels >= 3:  # keep RGB, extra channels start as the mean RGB kernel
            new.weight.copy_(torch.cat([w, w.mean(1, keepdim=True).expand(-1, in_channels - 3, -1, -1)], 1))
        else:  # grey input replicated over RGB: the summed kernel, shared between the channels
            new.weight.copy_(w.sum(1, keepdim=True).expand(-1, in_channels, -1, -1) / in_channels)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _load(model: nn.Module, state: dict[str, torch.Tensor] | None, name: str, *, strict: bool = True) -> None:
    if state is None:
        return
    try:
        result = model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise CheckpointError(f"weights for '{name}' do not fit the architecture: "
                              f"{' '.join(str(exc).split())[:300]}") from None
    if not strict and result.missing_keys:
        raise CheckpointError(f"weights for '{name}' lack {len(result.missing_keys)} tensors, e.g. "
                              f"{result.missing_keys[0]}")


def stage1_encoder(state: dict[str, torch.Tensor] | None, own: set[str]) -> dict[str, torch.Tensor] | None:
    """The smp encoder tensors of a livercad stage-1 checkpoint (``encoder.*``, prefix removed), else ``state``.

    smp's ResNet encoders keep torchvision's parameter names, so a trained ``segmenter.pt`` (U-Net on a
    ResNet encoder) initialises a ResNet classifier of the same depth: transfer from the project's own
    liver segmentation when no ImageNet weights are at hand. A state dict that already fits ``own`` keys
    is returned unchanged.
    """
    if state is None or any(k in own for k in state) or not any(k.startswith("encoder.") for k in state):
        return state
    logger.info("classifier weights: the encoder of a stage-1 segmenter checkpoint")
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def torchvision_backbone(name: str, weights: str) -> tuple[nn.Module, int, list[list[str]], str, dict[str, Any]]:
    """A torchvision backbone without its head: ``(model, features, stages, first conv, weights provenance)``."""
    import torchvision

    spec = TORCHVISION[name]
    model = torchvision.models.get_model(name, weights=None, **spec.kwargs)
    state, info = resolve_weights(weights, family="torchvision", name=name)
    if state is not None and name == "inception_v3":
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    own = model.state_dict()
    encoder = stage1_encoder(state, set(own))
    if encoder is not state:  # a segmenter's encoder has no classification head: everything else must fit
        state = {**encoder, **{k: v for k, v in own.items() if k.startswith(f"{spec.strip}.")}}
    _load(model, state, name)
    num_features = model.get_submodule(spec.linear).in_features
    parent, _, child = spec.strip.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model, num_features, [list(s) for s in spec.stages], spec.first_conv, info.to_dict()


def timm_backbone(name: str, weights: str) -> tuple[nn.Module, int, list[list[str]], str, dict[str, Any]]:
    """A timm backbone without its head: ``(model, features, stages, first conv, weights provenance)``."""
    import timm
    from timm.models import group_modules

    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=3)
    state, info = resolve_weights(weights, family="timm", name=name)
    if state is not None:
        own = model.state_dict()
        state = stage1_encoder(state, set(own))
        _load(model, {k: v for k, v in state.items() if k in own}, name, strict=False)
    groups = group_modules(model, model.group_matcher(coarse=True))
    stages = [list(groups[k]) for k in sorted(groups)]
    first_conv = model.pretrained_cfg.get("first_conv", "")
    first_conv = first_conv[0] if isinstance(first_conv, (list, tuple)) else first_conv
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return model, num_features, stages, first_conv, info.to_dict()


def unknown_backbone(backbone: str) -> ConfigError:
    """The error for a backbone neither torchvision (:data:`TORCHVISION`) nor timm knows, with a suggestion."""
    import timm

    hint = did_you_mean(backbone, list(TORCHVISION)) or did_you_mean(backbone, timm.list_models())
    return ConfigError(f"classify.backbone: unknown backbone '{backbone}'; {hint}available: "
                       f"{', '.join(TORCHVISION)} or any timm model name")


__all__ = ["TORCHVISION", "patch_first_conv", "stage1_encoder", "timm_backbone", "torchvision_backbone",
           "unknown_backbone"]

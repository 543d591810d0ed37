"""Stage-2 classifier factory: a backbone by name, a new K-class head, and a transfer strategy.

Backbones come from torchvision by name (:data:`TORCHVISION`: resnet18/34/50/101, vgg16_bn,
inception_v3, densenet121, efficientnet_b0) or, for any other name, from timm
(``timm.create_model(name, pretrained=False, num_classes=0, in_chans=3)``). Weights ``none |
imagenet | <path>`` are resolved offline by :func:`livercad.runtime.weights.resolve_weights` and loaded into
the *original* architecture before the head is replaced, so provenance is exact. The path may be a
stage-1 ``segmenter.pt``: its smp ResNet encoder then initialises a ResNet backbone of the same depth
(:func:`stage1_encoder`).

Every model is a :class:`ClassifierNet`: ``backbone`` (image -> pooled feature vector) + ``head``
(one ``nn.Linear``). That split lets the ``frozen`` strategy train the head on cached features.

Strategies:
    * ``scratch``: random init, everything trains at ``lr``; requires ``weights: none`` (a
      ConfigError otherwise, so a "scratch" number can never silently come from pretrained weights).
    * ``frozen``: only the head trains; the whole backbone stays in eval mode (BatchNorm statistics
      and dropout fixed), so its features are deterministic and can be cached.
    * ``finetune``: all layers train, the backbone at ``lr * backbone_lr_factor`` (:func:`param_groups`).
    * ``partial:N``: the last N backbone stages + head train (backbone part at the reduced lr); the
      earlier stages are frozen with their BatchNorm layers kept in eval mode.

Extra input channels (``mask-channel`` -> 4) patch the first convolution: the RGB kernels are kept
and each extra channel starts as the mean of the RGB kernels. Inception-v3 runs without auxiliary
logits and without ``transform_input``; it needs inputs of at least 75 px.

Example:
    >>> net = build_classifier("resnet18", num_classes=2, strategy="frozen")
    >>> net(torch.zeros(1, 3, 64, 64)).shape, net.trainable_parameter_names()
    (torch.Size([1, 2]), ['head.weight', 'head.bias'])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from livercad.classify.regions import did_you_mean
from livercad.errors import CheckpointError, ConfigError
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


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """Split ``partial:N`` into ``("partial", N)``; other strategies give ``(name, None)``.

    Example:
        >>> parse_strategy("partial:2"), parse_strategy("frozen")
        (('partial', 2), ('frozen', None))
    """
    s = str(strategy).strip()
    if s in ("scratch", "frozen", "finetune"):
        return s, None
    if s.startswith("partial:") and s[8:].isdigit() and int(s[8:]) >= 1:
        return "partial", int(s[8:])
    hint = did_you_mean(s, ["scratch", "frozen", "finetune", "partial:1"])
    raise ConfigError(f"classify.strategy: unknown strategy '{strategy}'; {hint}"
                      "expected scratch, frozen, finetune or partial:N (N >= 1)")


class ClassifierNet(nn.Module):
    """``backbone`` (image -> ``(N, num_features)``) followed by a linear ``head``.

    Attributes:
        name: backbone name; family: ``torchvision`` | ``timm``; stages: backbone module names per stage;
        strategy: the transfer strategy applied; weights: provenance dict of the initial weights.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, *, name: str, family: str,
                 stages: list[list[str]], weights: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)
        self.name, self.family, self.stages = name, family, stages
        self.num_features, self.strategy = num_features, "finetune"
        self.weights: dict[str, Any] = weights or {"source": "random", "path": None, "sha256": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` for inputs ``(N, C, H, W)``."""
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> ClassifierNet:
        """Set train mode, keeping frozen parts (whole backbone / frozen BatchNorms) in eval mode."""
        super().train(mode)
        if mode and self.strategy == "frozen":
            self.backbone.eval()
        elif mode:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                        p.requires_grad for p in m.parameters(recurse=False)):
                    m.eval()
        return self

    def trainable_parameter_names(self) -> list[str]:
        """Names of the parameters that will be trained."""
        return [n for n, p in self.named_parameters() if p.requires_grad]


def _patch_first_conv(model: nn.Module, path: str, in_channels: int) -> None:
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


def _torchvision(name: str, weights: str) -> tuple[nn.Module, int, list[list[str]], str, dict[str, Any]]:
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


def _timm(name: str, weights: str) -> tuple[nn.Module, int, list[list[str]], str, dict[str, Any]]:
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


def _unknown(backbone: str) -> ConfigError:
    import timm

    hint = did_you_mean(backbone, list(TORCHVISION)) or did_you_mean(backbone, timm.list_models())
    return ConfigError(f"classify.backbone: unknown backbone '{backbone}'; {hint}available: "
                       f"{', '.join(TORCHVISION)} or any timm model name")


def apply_strategy(model: ClassifierNet, strategy: str) -> ClassifierNet:
    """Set ``requires_grad`` (and the eval-mode rules) of ``model`` for a transfer strategy."""
    kind, n = parse_strategy(strategy)
    if kind == "partial" and n is not None and n > len(model.stages):
        raise ConfigError(f"classify.strategy: '{strategy}' asks for {n} stages but {model.name} has "
                          f"{len(model.stages)}")
    for p in model.backbone.parameters():
        p.requires_grad = kind in ("scratch", "finetune")
    if kind == "partial" and n is not None:
        for stage in model.stages[-n:]:
            for path in stage:
                for p in model.backbone.get_submodule(path).parameters():
                    p.requires_grad = True
    for p in model.head.parameters():
        p.requires_grad = True
    model.strategy = kind
    return model.train(model.training)


def build_classifier(backbone: str, *, weights: str = "none", num_classes: int, in_channels: int = 3,
                     strategy: str = "finetune", image_size: int | None = None) -> ClassifierNet:
    """Build a classifier by backbone name with a fresh K-class head and a transfer strategy.

    Args:
        backbone: torchvision name from :data:`TORCHVISION` or any timm model name.
        weights: ``none`` | ``imagenet`` | path to a weights file (resolved offline).
        num_classes: K.
        in_channels: input channels (3 for 2.5-D slices, 4 with ``mask-channel``).
        strategy: ``scratch`` | ``frozen`` | ``finetune`` | ``partial:N``.
        image_size: optional input size, checked against the backbone's minimum (inception_v3: 75).

    Raises:
        ConfigError: unknown backbone/strategy, ``scratch`` with weights, too small an image.
        CheckpointError: weights not available offline or not fitting the architecture.
    """
    kind, _ = parse_strategy(strategy)
    if kind == "scratch" and str(weights).strip().lower() not in ("none", "random", ""):
        raise ConfigError(f"classify.strategy 'scratch' trains from random init; set classify.weights: none "
                          f"(got '{weights}')")
    if backbone in TORCHVISION:
        min_size = TORCHVISION[backbone].min_size
        if image_size is not None and image_size < min_size:
            raise ConfigError(f"classify.image_size: {backbone} needs at least {min_size} px, got {image_size}")
        model, nf, stages, first_conv, info = _torchvision(backbone, weights)
        family = "torchvision"
    else:
        import timm

        if not timm.is_model(backbone):
            raise _unknown(backbone)
        model, nf, stages, first_conv, info = _timm(backbone, weights)
        family = "timm"
    if in_channels != 3:
        _patch_first_conv(model, first_conv, in_channels)
    if kind == "frozen" and info.get("source") == "random":
        logger.info("%s: 'frozen' with random weights: a random-feature baseline", backbone)
    elif kind in ("finetune", "partial") and info.get("source") == "random":
        logger.warning("%s: strategy '%s' with random weights trains the backbone at lr x backbone_lr_factor; "
                       "'scratch' is usually meant", backbone, strategy)
    net = ClassifierNet(model, nf, num_classes, name=backbone, family=family, stages=stages, weights=info)
    return apply_strategy(net, strategy)


def param_groups(model: ClassifierNet, lr: float, factor: float) -> list[dict[str, Any]]:
    """Optimizer parameter groups: head at ``lr``, trainable backbone at ``lr * factor``.

    ``factor`` applies to ``finetune`` and ``partial:N`` (pretrained backbones); ``scratch`` trains all
    at ``lr``. Frozen parameters are left out.

    Example:
        >>> net = build_classifier("resnet18", num_classes=2)
        >>> [g["lr"] for g in param_groups(net, 1e-3, 0.1)]
        [0.001, 0.0001]
    """
    scale = 1.0 if model.strategy == "scratch" else factor
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": lr, "name": "head"},
              {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": lr * scale,
               "name": "backbone"}]
    return [g for g in groups if g["params"]]


__all__ = ["TORCHVISION", "stage1_encoder", "ClassifierNet", "apply_strategy", "build_classifier", "param_groups",
           "parse_strategy"]

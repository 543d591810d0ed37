"""Stage-2 classifier factory: a backbone by name, a new K-class head, and a transfer strategy.

Backbones come from torchvision by name (:data:`~livercad.classify.backbones.TORCHVISION`: resnet18/34/50/101,
vgg16_bn, inception_v3, densenet121, efficientnet_b0) or, for any other name, from timm
(``timm.create_model(name, pretrained=False, num_classes=0, in_chans=3)``); :mod:`livercad.classify.backbones`
builds them with their weights (``none | imagenet | <path>``, a stage-1 ``segmenter.pt`` included).

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
from typing import Any

import torch
from torch import nn

from livercad.classify.backbones import (
    TORCHVISION,
    patch_first_conv,
    timm_backbone,
    torchvision_backbone,
    unknown_backbone,
)
from livercad.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)


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


def check_scratch_weights(strategy: str, weights: str) -> str:
    """The strategy's kind (:func:`parse_strategy`); a ConfigError for ``scratch`` with weights other than none."""
    kind, _ = parse_strategy(strategy)
    if kind == "scratch" and str(weights).strip().lower() not in ("none", "random", ""):
        raise ConfigError(f"classify.strategy 'scratch' trains from random init; set classify.weights: none "
                          f"(got '{weights}')")
    return kind


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
    kind = check_scratch_weights(strategy, weights)
    if backbone in TORCHVISION:
        min_size = TORCHVISION[backbone].min_size
        if image_size is not None and image_size < min_size:
            raise ConfigError(f"classify.image_size: {backbone} needs at least {min_size} px, got {image_size}")
        model, nf, stages, first_conv, info = torchvision_backbone(backbone, weights)
        family = "torchvision"
    else:
        import timm

        if not timm.is_model(backbone):
            raise unknown_backbone(backbone)
        model, nf, stages, first_conv, info = timm_backbone(backbone, weights)
        family = "timm"
    if in_channels != 3:
        patch_first_conv(model, first_conv, in_channels)
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


__all__ = ["ClassifierNet", "apply_strategy", "build_classifier", "check_scratch_weights", "param_groups",
           "parse_strategy"]

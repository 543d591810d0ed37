"""The stage-1 segmenter: an smp model (U-Net/ResNet34 by default) built from a name, ImageNet encoder by default.

:func:`build_segmenter` creates the network with ``segmentation_models_pytorch.create_model`` (never
letting smp download anything: ``encoder_weights=None``), then loads the encoder weights resolved by
:func:`livercad.runtime.weights.resolve_weights` (``none`` | ``imagenet``, cached or downloaded once | a file). When
the model has other than 3 input channels, 3-channel ImageNet first-conv weights are adapted the way
smp does (:func:`segmentation_models_pytorch.encoders._utils.patch_first_conv`).

Example:
    >>> from livercad.config import SegmentModelConfig
    >>> m = build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none"))
    >>> tuple(m(torch.zeros(1, 3, 64, 64)).shape)
    (1, 1, 64, 64)
"""

from __future__ import annotations

import logging

import segmentation_models_pytorch as smp
import torch
from torch import nn

from livercad.config import SegmentModelConfig
from livercad.errors import CheckpointError, ConfigError, did_you_mean
from livercad.runtime.weights import WeightsInfo, resolve_weights

logger = logging.getLogger(__name__)


def in_channels_of(cfg: SegmentModelConfig) -> int:
    """Number of input channels: the 2.5-D stack of ``2*context + 1`` slices of each of the case's ``images``.

    Example:
        >>> in_channels_of(SegmentModelConfig(context=1, images=["image", "image_arterial"]))
        6
    """
    return (2 * cfg.context + 1) * len(cfg.images)


def check_encoder(name: str) -> None:
    """Raise ConfigError for an encoder smp does not know (``tu-<timm name>`` is also accepted)."""
    names = smp.encoders.get_encoder_names()
    if name in names:
        return
    if name.startswith("tu-"):
        import timm

        if timm.is_model(name[3:]):
            return
        options = timm.list_models()
        raise ConfigError(f"unknown timm encoder '{name}'; {did_you_mean(name[3:], options)}see timm.list_models()")
    raise ConfigError(f"unknown encoder '{name}'; {did_you_mean(name, names)}available: {', '.join(names)}")


def check_arch(arch: str) -> None:
    """Raise ConfigError for an architecture smp does not know."""
    archs = sorted(smp.MODEL_ARCHITECTURES_MAPPING)
    if arch.lower() not in archs:
        hint = did_you_mean(arch.lower(), archs)
        raise ConfigError(f"unknown architecture '{arch}'; {hint}available: {', '.join(archs)}")


def _first_conv_key(encoder: nn.Module, in_channels: int) -> str | None:
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == in_channels:
            return f"{name}.weight"
    return None


def adapt_first_conv(state: dict[str, torch.Tensor], encoder: nn.Module, in_channels: int) -> dict[str, torch.Tensor]:
    """Adapt 3-channel first-conv weights to ``in_channels`` exactly as smp's ``patch_first_conv`` does.

    1 channel: the RGB kernels are summed; N channels: kernel ``i`` copies RGB channel ``i % 3`` and all are
    scaled by ``3 / N``. Other tensors are returned unchanged.
    """
    key = _first_conv_key(encoder, in_channels)
    if in_channels == 3 or key is None or key not in state or state[key].shape[1] != 3:
        return state
    w = state[key]
    if in_channels == 1:
        new = w.sum(1, keepdim=True)
    else:
        new = torch.stack([w[:, i % 3] for i in range(in_channels)], dim=1) * (3.0 / in_channels)
    logger.info("adapted first conv %s from 3 to %d input channels", key, in_channels)
    return {**state, key: new}


def load_encoder_weights(model: nn.Module, state: dict[str, torch.Tensor], in_channels: int, source: str) -> None:
    """Load a state dict into ``model.encoder``; every encoder parameter must be present and fit."""
    encoder = model.encoder
    state = adapt_first_conv(dict(state), encoder, in_channels)
    expected = set(encoder.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} encoder weights missing (e.g. {', '.join(missing[:5])})")
    unexpected = set(state) - expected
    if unexpected:
        logger.info("%s: ignored %d keys not in the encoder", source, len(unexpected))
    try:
        encoder.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{source}: weights do not fit the encoder ({reason})") from None


def build_segmenter_with_info(cfg: SegmentModelConfig) -> tuple[nn.Module, WeightsInfo]:
    """Like :func:`build_segmenter` but also returns the weights' provenance."""
    check_arch(cfg.arch)
    check_encoder(cfg.encoder)
    c = in_channels_of(cfg)
    extra = {} if cfg.decoder_channels is None else {"decoder_channels": list(cfg.decoder_channels)}
    try:
        model = smp.create_model(cfg.arch, encoder_name=cfg.encoder, encoder_weights=None, in_channels=c, classes=1,
                                 **extra)
    except (TypeError, ValueError) as exc:
        if not extra:
            raise
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"segment.model.decoder_channels {cfg.decoder_channels} do not fit {cfg.arch}/"
                          f"{cfg.encoder} ({reason})") from None
    state, info = resolve_weights(cfg.encoder_weights, family="smp", name=cfg.encoder)
    if state is not None:
        load_encoder_weights(model, state, c, info.path or cfg.encoder_weights)
    return model, info


def build_segmenter(cfg: SegmentModelConfig) -> nn.Module:
    """Create the segmentation network from the config (one output channel: liver logit).

    Args:
        cfg: architecture, encoder name, weights spec, 2.5-D context, decoder widths.

    Returns:
        The torch module mapping ``(N, C, S, S)`` to logits ``(N, 1, S, S)``.

    Raises:
        ConfigError: unknown architecture or encoder (with the closest valid name).
        CheckpointError: ImageNet weights not available offline, or a weights file that does not fit.
    """
    return build_segmenter_with_info(cfg)[0]


def load_init_weights(model: nn.Module, spec: str) -> dict[str, str]:
    """Load a trained segmenter (``segment.init``: ``default``, a bundle or a ``segmenter.pt``) into ``model``.

    Returns:
        Provenance ``{"source": "segmenter", "path": ..., "sha256": ...}``.

    Raises:
        CheckpointError: no checkpoint there, or its weights do not fit the configured network.
    """
    from livercad.models import segmenter_checkpoint
    from livercad.runtime.checkpoint import load_checkpoint
    from livercad.runtime.weights import sha256_file

    path = segmenter_checkpoint(spec)
    state, _ = load_checkpoint(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: segment.init weights do not fit segment.model "
                              f"({' '.join(str(exc).split())[:200]})") from None
    return {"source": "segmenter", "path": str(path), "sha256": sha256_file(path)}


__all__ = ["build_segmenter", "build_segmenter_with_info", "in_channels_of", "check_encoder", "adapt_first_conv",
           "load_init_weights"]

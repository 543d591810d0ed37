"""Pretrained weights resolved before any data work: a missing file fails in seconds, not after a cohort.

Every training entry point (``livercad train segment|classify|pipeline``, :func:`train_pipeline`,
:func:`train_stage1`, the ablation, the demo) calls :func:`ensure_run_weights` first. ImageNet weights that are
not cached are downloaded here, once, through the libraries (progress bar; see :mod:`livercad.runtime.weights`);
offline or without a route it raises the one-line :class:`~livercad.errors.WeightsUnavailableError` naming the
file and the folder to place it in. The model builders later find the file in the cache.

Example:
    >>> from livercad.config import load_config
    >>> cfg = load_config(None, ["segment.model.encoder_weights=none", "classify.weights=none"])
    >>> {k: v.source for k, v in ensure_run_weights(cfg, segment=True, classify=True).items()}
    {'segment/resnet34': 'random', 'classify/resnet50': 'random'}
"""

from __future__ import annotations

import logging

from livercad.config import Config
from livercad.runtime.weights import WeightsInfo, ensure_weights

log = logging.getLogger(__name__)

_NONE = ("none", "random", "null", "")


def _is_none(spec: str | None) -> bool:
    return str(spec or "").strip().lower() in _NONE


def classify_family(backbone: str) -> str:
    """``torchvision`` for a name of :data:`~livercad.classify.backbones.TORCHVISION`, else ``timm``.

    Raises:
        ConfigError: a name neither library knows (with the closest valid name).
    """
    from livercad.classify.backbones import TORCHVISION, unknown_backbone

    if backbone in TORCHVISION:
        return "torchvision"
    import timm

    if not timm.is_model(backbone):
        raise unknown_backbone(backbone)
    return "timm"


def _classify(weights: str, strategy: str, backbone: str) -> WeightsInfo:
    from livercad.classify.model import check_scratch_weights

    check_scratch_weights(strategy, weights)  # refused now, not after stage 1 has trained
    return ensure_weights(weights, family=classify_family(backbone), name=backbone)


def ensure_run_weights(cfg: Config, *, segment: bool = False, classify: bool = False, ablation: bool = False
                       ) -> dict[str, WeightsInfo]:
    """Resolve (download on first use) the initial weights of the stages a run will train, before any data work.

    Args:
        cfg: the run config.
        segment: stage 1's encoder (``segment.model``); skipped when stage 1 starts from ``segment.init``, whose
            trained weights replace the encoder's.
        classify: stage 2's backbone (``classify.backbone``/``weights``; ``scratch`` must have ``none``).
        ablation: every backbone of ``ablation.backbones`` its non-``scratch`` arms initialise from
            ``classify.weights`` (``scratch`` arms use none).

    Returns:
        ``{"segment/<encoder>" | "classify/<backbone>": WeightsInfo}`` for what was checked.

    Raises:
        WeightsUnavailableError: ImageNet weights neither cached nor downloadable (offline, no route).
        CheckpointError: a weights file that is missing or not a state dict.
        ConfigError: an unknown backbone; ``scratch`` with pretrained weights.
    """
    done: dict[str, WeightsInfo] = {}
    if segment and not cfg.segment.init:
        m = cfg.segment.model
        if not _is_none(m.encoder_weights):
            from livercad.segment.model import check_encoder

            check_encoder(m.encoder)
        done[f"segment/{m.encoder}"] = ensure_weights(m.encoder_weights, family="smp", name=m.encoder)
    c = cfg.classify
    if classify:
        done[f"classify/{c.backbone}"] = _classify(c.weights, c.strategy, c.backbone)
    if ablation:
        from livercad.classify.model import parse_strategy

        if any(parse_strategy(s)[0] != "scratch" for s in cfg.ablation.strategies):  # scratch arms: none
            for b in dict.fromkeys(cfg.ablation.backbones):
                if f"classify/{b}" not in done:
                    done[f"classify/{b}"] = _classify(c.weights, "finetune", b)
    for key, info in done.items():
        if info.source != "random":
            log.info("initial weights of %s: %s %s", key, info.source, info.path)
    return done


__all__ = ["classify_family", "ensure_run_weights"]

"""Typed metadata of the two stages' checkpoints: built once from the config sections, read once.

A stage's checkpoint is the one record of the settings its network needs at inference: for stage 1 the
architecture, the preprocessing (:class:`Preprocessing`) and the post-processing (threshold included);
for stage 2 the backbone, classes, region and aggregation. Training builds it with
:meth:`SegmenterMeta.build` / :meth:`ClassifierMeta.build` from the config sections it trained with;
every reader goes through :func:`read_meta` (or :func:`load_stage`), which checks the kind, fills the
defaults of older checkpoints and drops the :data:`RETIRED_META_KEYS` they may carry. ``bundle.json`` does
not copy these settings.

Example:
    >>> from livercad.config import Config
    >>> meta = SegmenterMeta.build(Config(), modalities=["ct"], weights={"source": "random"})
    >>> info = read_meta(SegmenterMeta, {**meta.to_dict(), "extra_channels": 0}, "segmenter.pt")
    >>> info.preprocessing.ct_window, info.in_channels, info.postprocess.threshold
    ((-160.0, 240.0), 3, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from livercad.config import (
    CT_WINDOW,
    PERCENTILES,
    ClassifyConfig,
    Config,
    PostprocessConfig,
    SegmentModelConfig,
)
from livercad.errors import CheckpointError

#: Keys that checkpoints of older versions carry and this one no longer has: key -> the only value a
#: checkpoint may still hold for it (it is then dropped; any other value is refused).
#: ``extra_channels``: input channels beyond the 2.5-D slice stack, never supplied by any dataset.
RETIRED_META_KEYS: dict[str, Any] = {"extra_channels": 0}

_CLASSIFY = ClassifyConfig()


class _Meta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[str] = ""
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, as stored in the checkpoint."""
        return self.model_dump(mode="json")


class Preprocessing(_Meta):
    """What the stage-1 network saw at training time; :func:`livercad.preprocess.prepare.prepare` repeats it.

    ``modalities``: the names trained on (checkpoints written before it record only ``modality``).
    """

    modality: str = "ct"
    modalities: list[str] = Field(default_factory=list)
    image_size: int = Field(ge=8)
    ct_window: tuple[float, float] = CT_WINDOW
    percentiles: tuple[float, float] = PERCENTILES
    context: int = Field(1, ge=0)
    orientation: Literal["RAS"] = "RAS"

    @model_validator(mode="before")
    @classmethod
    def _one_modality(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("modalities"):
            return {**data, "modalities": [data.get("modality", "ct")]}
        return data


class SegmenterMeta(_Meta):
    """Metadata of a ``segmenter.pt``: the network, its preprocessing and post-processing, provenance.

    ``images``: the co-registered images a case gives, in channel order (manifest columns, ``image`` first;
    checkpoints written before it take ``["image"]``); ``in_channels`` is ``(2*context + 1) * len(images)``.
    """

    KIND: ClassVar[str] = "segmenter"
    REQUIRED: ClassVar[tuple[str, ...]] = ("arch", "encoder", "context", "preprocessing")

    kind: Literal["segmenter"] = "segmenter"
    arch: str
    encoder: str
    decoder_channels: list[int] | None = None
    context: int = Field(ge=0)
    in_channels: int | None = None
    images: list[str] = Field(default_factory=lambda: ["image"])
    preprocessing: Preprocessing
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    training_domain: str | None = None
    phantom: dict[str, Any] | None = None
    weights: dict[str, Any] = Field(default_factory=lambda: {"source": "unknown"})
    init: dict[str, Any] | None = None
    history: dict[str, Any] | None = None
    seed: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    resume_key: str | None = None
    trained_image_size: int | None = None
    stored_dtype: str | None = None
    release: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _slice_stack(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("in_channels") is None and isinstance(data.get("context"), int):
            n = len(data.get("images") or ["image"])
            return {**data, "in_channels": (2 * data["context"] + 1) * n}
        return data

    @model_validator(mode="after")
    def _slice_stack_only(self) -> SegmenterMeta:
        stack = (2 * self.context + 1) * len(self.images)
        if self.in_channels != stack:
            raise ValueError(f"in_channels {self.in_channels} is not the 2.5-D stack of context {self.context} "
                             f"of {len(self.images)} image(s) ({stack}); extra input channels are not supported")
        return self

    def network(self) -> SegmentModelConfig:
        """The ``segment.model`` section that rebuilds this network (weights come from the checkpoint)."""
        return SegmentModelConfig(arch=self.arch, encoder=self.encoder, encoder_weights="none", context=self.context,
                                  decoder_channels=self.decoder_channels, images=list(self.images))

    @classmethod
    def build(cls, cfg: Config, *, modalities: list[str], weights: dict[str, Any], **record: Any) -> SegmenterMeta:
        """The metadata of a segmenter trained with ``cfg``.

        Args:
            cfg: the run config (``segment.model``, ``preprocess``, ``segment.postprocess``, ``data``).
            modalities: the modality names trained on.
            weights: provenance of the initial weights.
            record: what the training adds (``init``, ``history``, ``versions``, ``resume_key``...).
        """
        from livercad.config import config_to_dict
        from livercad.domain import config_domain

        m = cfg.segment.model
        phantom = cfg.data.phantom.model_dump(mode="json") if cfg.data.manifest is None else None
        pp = Preprocessing(**cfg.preprocess.model_dump(), context=m.context, modalities=modalities)
        return cls(arch=m.arch, encoder=m.encoder, decoder_channels=m.decoder_channels, context=m.context,
                   images=list(m.images), preprocessing=pp, postprocess=cfg.segment.postprocess,
                   training_domain=config_domain(cfg.data.manifest), phantom=phantom, weights=weights,
                   seed=cfg.segment.train.seed, config=config_to_dict(cfg), **record)


class ClassifierMeta(_Meta):
    """Metadata of a ``classifier.pt``: the network, the inputs it was trained on, the decision, provenance.

    ``images``: the co-registered images of the cases it was trained on, in channel order (as the segmenter's).
    """

    KIND: ClassVar[str] = "livercad-classifier"
    REQUIRED: ClassVar[tuple[str, ...]] = ("backbone", "classes", "region", "image_size", "in_channels")

    kind: Literal["livercad-classifier"] = "livercad-classifier"
    backbone: str
    family: str | None = None
    classes: list[str]
    region: str
    strategy: str | None = None
    weights: dict[str, Any] | None = None
    image_size: int = Field(ge=8)
    in_channels: int = Field(ge=1)
    context: int = 1
    images: list[str] = Field(default_factory=lambda: ["image"])
    aggregation: str = _CLASSIFY.aggregation
    top_k: int = _CLASSIFY.top_k
    min_liver_fraction: float = _CLASSIFY.min_liver_fraction
    crop_margin: float = _CLASSIFY.crop_margin
    decision: dict[str, Any] | None = None
    seed: int | None = None
    config: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    best_epoch: int | None = None
    best_val_score: float | None = None
    n_train_cases: int | None = None
    n_val_cases: int | None = None
    n_train_slices: int | None = None
    skipped: dict[str, Any] | None = None
    feature_cache: bool | None = None
    train_seconds: float | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    resumed_from_step: int | None = None
    steps_run: int | None = None
    steps: int | None = None
    resume_key: str | None = None
    training_domain: str | None = None
    checkpoint: dict[str, Any] | None = None

    @classmethod
    def build(cls, cfg: ClassifyConfig, *, backbone: str, family: str, weights: dict[str, Any], in_channels: int,
              context: int, seed: int, images: list[str] | None = None, **record: Any) -> ClassifierMeta:
        """The metadata of a classifier trained with the ``classify`` section ``cfg``.

        Args:
            cfg: the ``classify`` section.
            backbone, family, weights: the network built (name, ``torchvision`` | ``timm``, initial weights).
            in_channels, context: its input channels and 2.5-D context.
            seed: the training seed.
            images: the co-registered images of its cases, in channel order (``None``: ``["image"]``).
            record: what the training adds (``history``, ``decision``, counts, ``versions``, ``resume_key``...).
        """
        return cls(backbone=backbone, family=family, classes=list(cfg.classes), region=cfg.region,
                   strategy=cfg.strategy, weights=weights, image_size=cfg.image_size, in_channels=in_channels,
                   context=context, images=list(images or ["image"]), aggregation=cfg.aggregation, top_k=cfg.top_k,
                   min_liver_fraction=cfg.min_liver_fraction, crop_margin=cfg.crop_margin, seed=seed,
                   config=cfg.model_dump(mode="json"), **record)


M = TypeVar("M", SegmenterMeta, ClassifierMeta)


def _drop_retired(raw: dict[str, Any], source: str | Path) -> dict[str, Any]:
    for key, accepted in RETIRED_META_KEYS.items():
        if key in raw and raw.pop(key) != accepted:
            raise CheckpointError(f"{source}: written with '{key}' other than {accepted!r}, which livercad no "
                                  "longer supports")
    return raw


def read_meta(cls: type[M], raw: Mapping[str, Any], source: str | Path) -> M:
    """The typed metadata of a checkpoint (``raw``: the dict stored in it), checked.

    Raises:
        CheckpointError: another kind of checkpoint, a required key missing, a retired key with a value this
            version cannot honour, or a value of the wrong type.
    """
    kind = raw.get("kind", cls.KIND if cls is SegmenterMeta else None)
    missing = [k for k in cls.REQUIRED if k not in raw]
    if kind != cls.KIND or missing:
        what = "segmenter" if cls is SegmenterMeta else "livercad classifier"
        raise CheckpointError(f"{source}: not a {what} checkpoint (kind {kind!r}, missing {missing})")
    try:
        return cls.model_validate(_drop_retired(dict(raw), source))
    except ValidationError as exc:
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'meta'}: {e['msg']}" for e in exc.errors()]
        raise CheckpointError(f"{source}: invalid {cls.KIND} metadata ({'; '.join(parts)})") from None


def load_stage(path: str | Path, cls: type[M]) -> tuple[dict[str, torch.Tensor], M]:
    """A stage's checkpoint: its weights and typed metadata (:func:`read_meta`).

    Raises:
        CheckpointError: see :func:`livercad.runtime.checkpoint.load_checkpoint` and :func:`read_meta`.
    """
    from livercad.runtime.checkpoint import load_checkpoint

    state, raw = load_checkpoint(path)
    return state, read_meta(cls, raw, path)


__all__ = ["RETIRED_META_KEYS", "ClassifierMeta", "Preprocessing", "SegmenterMeta", "load_stage", "read_meta"]

"""Stage-1 inference: a trained segmenter applied to whole volumes, results on the input's own grid.

:class:`Segmenter` rebuilds the network from a ``segmenter.pt`` (safe load, metadata checked) and holds
the resolved device/precision. :func:`segment_prepared` runs batches of 2.5-D slices under
``torch.inference_mode`` (channels-last, bf16 autocast when the precision resolves to bf16).
:func:`segment_volume` goes volume -> probability -> post-processed mask on the canonical
full-resolution grid -> the original voxel grid through the exact inverse of the orientation.
``backend="onnx"`` (or ``auto``) runs the network with ONNX Runtime instead (:mod:`livercad.runtime.backend`).
Cohorts are scored by :func:`livercad.pipeline.stage1.evaluate_segmenter`.

Example:
    >>> import numpy as np
    >>> from livercad.types import Volume
    >>> seg = Segmenter.random(image_size=32, encoder="resnet18")
    >>> vol = Volume(np.zeros((40, 30, 5), np.float32), np.diag([-1., 1, 3, 1]), None, (1., 1, 3))
    >>> out = segment_volume(seg, vol)
    >>> out.segmentation.mask.shape, out.segmentation.mask.dtype.name, tuple(out.prob_model.shape)
    ((40, 30, 5), 'uint8', (5, 32, 32))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from livercad.config import PostprocessConfig, SegmentModelConfig
from livercad.errors import CheckpointError, ConfigError, InputError
from livercad.preprocess.prepare import Prepared, context_stack, prepare
from livercad.runtime.backend import resolve_precision, select_backend
from livercad.runtime.checkpoint_meta import Preprocessing, SegmenterMeta, load_stage, read_meta
from livercad.segment.coarse import coarse_to_fine as coarse_pass
from livercad.segment.data import model_space_mask
from livercad.segment.model import build_segmenter
from livercad.segment.postprocess import postprocess_binary, postprocess_mask, threshold_canonical
from livercad.types import Segmentation, Volume

logger = logging.getLogger(__name__)



def _default_device(device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Segmenter:
    """A trained segmentation network ready for inference.

    Attributes:
        model: the network (eval mode, on ``device``).
        meta: checkpoint metadata (config, preprocessing, weights, history, versions).
        device: where it runs.
        precision: the resolved precision, ``fp32`` or ``bf16`` (the requested one is in ``precision_requested``).
        channels_last: whether inputs and weights use the channels-last memory format.
        backend: the backend used, ``torch`` or ``onnx`` (the requested one is in ``backend_requested``).
        runner: the ONNX Runtime model when ``backend == "onnx"``.
    """

    model: nn.Module
    meta: dict[str, Any]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    channels_last: bool = True
    precision_requested: str = "auto"
    backend: str = "torch"
    backend_requested: str = "torch"
    runner: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def from_model(cls, model: nn.Module, meta: dict[str, Any] | SegmenterMeta, *, precision: str = "auto",
                   device: torch.device | str | None = None, channels_last: bool = True,
                   backend: str = "torch") -> Segmenter:
        """Wrap an already-built network (moved to ``device``, eval mode, channels-last) on ``backend``.

        ``backend``: ``torch``, ``onnx`` (fp32, CPU; ``precision="auto"`` then means fp32) or ``auto``
        (onnx where it can run, see :func:`livercad.runtime.backend.select_backend`). ``meta`` is read by
        :func:`livercad.runtime.checkpoint_meta.read_meta` (checked, defaults of older checkpoints filled).
        """
        info = meta if isinstance(meta, SegmenterMeta) else read_meta(SegmenterMeta, meta, "segmenter metadata")
        dev = _default_device(device)
        model = model.to(dev).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        resolved = resolve_precision("fp32" if backend == "onnx" and precision == "auto" else precision, dev)
        size = info.preprocessing.image_size
        sha = (info.checkpoint or {}).get("sha256")
        used, runner = select_backend(backend, model, (1, info.in_channels, size, size), device=dev,
                                      precision=resolved, sha256=sha, what="segmenter")
        logger.info("segmenter on %s, precision %s (requested %s), backend %s", dev, resolved, precision, used)
        return cls(model, info.to_dict(), dev, resolved, channels_last, precision, used, backend, runner)

    @classmethod
    def load(cls, path: str | Path, *, precision: str = "auto", device: torch.device | str | None = None,
             channels_last: bool = True, backend: str = "torch") -> Segmenter:
        """Load a ``segmenter.pt`` written by :func:`livercad.segment.fit.train_segmenter`.

        Raises:
            CheckpointError: missing/unsafe/corrupt file, missing metadata, weights that do not fit.
        """
        state, info = load_stage(path, SegmenterMeta)
        try:
            model = build_segmenter(info.network())
        except (ValidationError, ConfigError) as exc:
            raise CheckpointError(f"{path}: cannot rebuild the network from its metadata ({exc})") from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit {info.arch}/{info.encoder} "
                                  f"({' '.join(str(exc).split())[:300]})") from None
        return cls.from_model(model, info, precision=precision, device=device, channels_last=channels_last,
                              backend=backend)

    @classmethod
    def random(cls, *, image_size: int = 64, encoder: str = "resnet18", modality: str = "ct", context: int = 1,
               seed: int = 0, images: Sequence[str] = ("image",), **kwargs: Any) -> Segmenter:
        """An untrained segmenter with random weights (tests, benchmarks, geometry checks) for ``images``."""
        torch.manual_seed(seed)
        model = build_segmenter(SegmentModelConfig(encoder=encoder, encoder_weights="none", context=context,
                                                   images=list(images)))
        pp = Preprocessing(modality=modality, image_size=image_size, context=context)
        meta = SegmenterMeta(arch="Unet", encoder=encoder, context=context, images=list(images), preprocessing=pp,
                             weights={"source": "random"})
        return cls.from_model(model, meta, **kwargs)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Preprocessing the network was trained with (modality, image_size, window, percentiles, context)."""
        return self.meta["preprocessing"]

    @property
    def modalities(self) -> list[str]:
        """Modality families (``ct`` | ``mr`` | ``us``) the network was trained on.

        Read from ``preprocessing.modalities``; checkpoints written before it record one ``modality``.
        """
        from livercad.modality import family

        pp = self.preprocessing
        return [family(m) for m in pp.get("modalities", [pp["modality"]])]

    @property
    def images(self) -> list[str]:
        """The co-registered images a case gives, in channel order (manifest columns, ``image`` first)."""
        return list(self.meta.get("images") or ["image"])

    @property
    def weights(self) -> dict[str, Any]:
        """Provenance of the initial weights (``source``, ``path``, ``sha256``)."""
        return self.meta.get("weights", {"source": "unknown"})

    @property
    def postprocess(self) -> PostprocessConfig:
        """Post-processing recorded at training time (defaults when absent)."""
        return PostprocessConfig(**self.meta.get("postprocess", {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, 1, S, S)`` of a slice batch on the backend in use."""
        return self.runner(x) if self.runner is not None else self.model(x)

    def prepare(self, volume: Volume, modality: str | None = None, *, check: bool = True) -> Prepared:
        """Preprocess a volume exactly as at training time, normalised for ``modality``.

        ``modality`` ``None`` means the (first) modality the network was trained on. ``check=False`` prepares
        a modality the network was not trained on (model space for another tool's mask, which this network
        does not segment).

        Raises:
            InputError: ``modality`` is of a family the network was not trained on (with ``check``); the volume
                does not carry one image per :attr:`images`.
        """
        from livercad.modality import check_trained_for, family

        pp = self.preprocessing
        if modality is None:
            modality = pp["modality"]
        if check:
            check_trained_for(family(modality), self.modalities, "the segmenter")
        names = self.images
        if 1 + len(volume.channels) != len(names):
            raise InputError(volume.path, f"{1 + len(volume.channels)} image(s) given, the segmenter takes "
                                          f"{len(names)} ({', '.join(names)})")
        return prepare(volume, modality=modality, image_size=int(pp["image_size"]), ct_window=tuple(pp["ct_window"]),
                       percentiles=tuple(pp["percentiles"]))


def _plain(t: torch.Tensor) -> torch.Tensor:
    """Drop MONAI's MetaTensor subclass: its per-op metadata tracking slows every layer of the network."""
    return t.as_subclass(torch.Tensor) if type(t) is not torch.Tensor else t


def segment_prepared(seg: Segmenter, prepared: Prepared, *, batch_size: int = 4,
                     coarse_to_fine: bool = False, threshold: float | None = None) -> torch.Tensor:
    """Liver probability ``(Z, S, S)`` (float32, CPU) in model space, slices in batches.

    ``coarse_to_fine``: run every ~15 mm slice first, then only the slices around the liver
    (:mod:`livercad.segment.coarse`); skipped slices get probability 0. A coarse slice has liver where it
    reaches ``threshold``: the threshold of the mask (``None``: the segmenter's post-processing one).

    Example:
        >>> import numpy as np
        >>> from livercad.types import Volume
        >>> seg = Segmenter.random(image_size=32)
        >>> p = seg.prepare(Volume(np.zeros((32, 32, 3), np.float32), np.eye(4), None, (1., 1, 1)))
        >>> tuple(segment_prepared(seg, p, batch_size=2).shape)
        (3, 32, 32)
    """
    image, ctx = _plain(prepared.image), int(seg.meta["context"])
    out = torch.zeros((image.shape[0], *image.shape[-2:]), dtype=torch.float32)
    amp = torch.autocast(seg.device.type, dtype=torch.bfloat16) if seg.precision == "bf16" else nullcontext()
    fmt = torch.channels_last if seg.channels_last and seg.runner is None else torch.contiguous_format
    step = max(int(batch_size), 1)

    def run(index: list[int]) -> None:
        for start in range(0, len(index), step):
            idx = torch.as_tensor(index[start:start + step], dtype=torch.long)
            x = context_stack(image, idx, ctx).to(seg.device).contiguous(memory_format=fmt)
            out[idx] = torch.sigmoid(seg.forward(x).float())[:, 0].cpu()

    with torch.inference_mode(), amp:
        if coarse_to_fine:
            level = seg.postprocess.threshold if threshold is None else threshold
            coarse_pass(run, out, spacing_z=float(prepared.spacing[2]), threshold=level)
        else:
            run(list(range(image.shape[0])))
    return out


@dataclass(frozen=True)
class SegmentOutput:
    """Everything :func:`segment_volume` computed for one volume.

    Attributes:
        prepared: the preprocessed volume (with its exact inverse).
        prob_model: float32 ``(Z, S, S)`` liver probability in model space.
        mask_model: uint8 ``(Z, S, S)``: the post-processed mask brought back to model space (``None`` when
            :func:`segment_volume` was asked for no ``model_mask``).
        segmentation: probability (float32) and mask (uint8) on the ORIGINAL voxel grid.
        seconds: time per stage (``preprocess``, ``model``, ``postprocess``).
    """

    prepared: Prepared
    prob_model: torch.Tensor
    mask_model: torch.Tensor | None
    segmentation: Segmentation
    seconds: dict[str, float]


def segment_volume(seg: Segmenter, volume: Volume, *, batch_size: int = 4,
                   postprocess: PostprocessConfig | None = None, coarse_to_fine: bool = False,
                   keep_prob: bool = True, modality: str | None = None, model_mask: bool = True,
                   after_model: Callable[[], None] | None = None) -> SegmentOutput:
    """Segment the liver of one volume; the mask has exactly the volume's shape (and belongs to its affine).

    Post-processing (threshold, largest component, hole filling) runs on the canonical full-resolution grid,
    then the result is mapped back with the exact inverse of the reorientation.

    Args:
        seg: the loaded segmenter.
        volume: the input image.
        batch_size: slices per forward pass.
        postprocess: overrides the post-processing recorded in the checkpoint.
        coarse_to_fine: skip slices far from the liver (see :func:`segment_prepared`).
        keep_prob: also return ``segmentation.prob`` (float32, original grid); ``False``: ``None``, never computed.
        modality: the case's modality (see :meth:`Segmenter.prepare`); ``None``: the trained one.
        model_mask: also bring the mask back to model space (``mask_model``, stage 2's input); ``False``:
            ``None``, never computed (a segmentation-only prediction).
        after_model: called once the network has run, before post-processing (prediction starts reading the
            next case there, :meth:`~livercad.pipeline.predict.predictor.Predictor.run`).
    """
    t0 = time.perf_counter()
    prepared = seg.prepare(volume, modality)
    t1 = time.perf_counter()
    cfg, prob = postprocess or seg.postprocess, None  # one threshold for the coarse pass and the mask
    prob_model = segment_prepared(seg, prepared, batch_size=batch_size, coarse_to_fine=coarse_to_fine,
                                  threshold=cfg.threshold)
    t2 = time.perf_counter()
    if after_model is not None:
        after_model()
    if keep_prob:
        prob_canon = prepared.to_canonical(prob_model)
        mask_canon = postprocess_mask(prob_canon, cfg)
        prob = prepared.canonical_to_original(prob_canon).astype(np.float32, copy=False)
    else:  # the same mask from a chunk-wise threshold, no full-resolution float32 map (peak memory)
        mask_canon = postprocess_binary(threshold_canonical(prepared, prob_model, cfg.threshold), cfg)
    mask = prepared.canonical_to_original(mask_canon).astype(np.uint8, copy=False)
    mask_model = model_space_mask(prepared, mask) if model_mask else None
    t3 = time.perf_counter()
    seconds = {"preprocess": t1 - t0, "model": t2 - t1, "postprocess": t3 - t2}
    return SegmentOutput(prepared, prob_model, mask_model, Segmentation(prob=prob, mask=mask), seconds)


__all__ = ["Segmenter", "SegmentOutput", "segment_prepared", "segment_volume"]

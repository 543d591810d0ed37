"""Slice datasets for stage 1: each case loaded once, 2.5-D slices served from compact tensors.

A :class:`TrainingSlices` holds one case in model space (``prepare`` -> ``(Z, S, S)`` normalised slices
stored as float16, the ground-truth mask brought over with :func:`model_space_mask` as uint8); stage 2's
input, :class:`livercad.types.CaseSlices`, is built by stage 1 instead (:mod:`livercad.pipeline.stage1`).
:class:`SliceDataset` serves ``(stack (C, S, S), mask (1, S, S), case index)`` items, with optional
augmentation from :func:`anatomy_augment` (MONAI dictionary transforms, so image and mask get the very
same geometric transform; no flips: a flip would move the liver to the wrong side of the body).
:func:`balanced_sampler` draws liver-bearing and liver-free slices in a fixed proportion.

Example:
    >>> import torch
    >>> z = torch.zeros(4, 32, 32)
    >>> case = TrainingSlices("c1", z.half(), z.to(torch.uint8))
    >>> x, y, c = SliceDataset([case], context=1)[2]
    >>> tuple(x.shape), tuple(y.shape), c
    ((3, 32, 32), (1, 32, 32), 0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandHistogramShiftd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropd,
)
from torch.utils.data import Dataset, WeightedRandomSampler

from livercad.config import Config
from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.preprocess.prepare import Prepared, context_stack, prepare

logger = logging.getLogger(__name__)

Augment = Callable[[dict[str, torch.Tensor]], dict[str, Any]]


@dataclass(frozen=True)
class TrainingSlices:
    """One case in model space with its ground-truth mask, for stage-1 training.

    Attributes:
        case_id: the manifest's case id.
        image: float16 ``(Z, S, S)`` normalised canonical slices (``(Z, n, S, S)`` for ``n`` co-registered images).
        mask: uint8 ``(Z, S, S)`` liver mask (0/1).
    """

    case_id: str
    image: torch.Tensor
    mask: torch.Tensor

    @property
    def liver_slices(self) -> torch.Tensor:
        """Bool ``(Z,)``: which slices contain liver."""
        return self.mask.flatten(1).any(dim=1)


def row_liver_labels(row: ManifestRow, default: Sequence[int] | None = None) -> Sequence[int] | None:
    """The label values that count as liver in a row's mask, the one rule wherever a reference mask is read.

    ``default`` (the config's ``data.liver_labels``) when set, else the row's ``liver_labels`` column, else
    ``None`` (every value > 0).

    Example:
        >>> from pathlib import Path
        >>> row = ManifestRow("a", "a", Path("a.nii.gz"), extra={"liver_labels": "1,2"})
        >>> row_liver_labels(row), row_liver_labels(row, [1])
        ((1, 2), [1])
    """
    if default is not None:
        return default
    from livercad.io.manifest_check import parse_liver_labels

    return parse_liver_labels(row.extra.get("liver_labels"))


def row_modality(row: ManifestRow, default: str) -> str:
    """A row's modality: its manifest ``modality`` column (name matched case-insensitively) when filled, else
    ``default`` (the config's)."""
    from livercad.domain import extra_value

    return extra_value(row.extra, "modality") or default


def model_space_mask(prepared: Prepared, ref: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A mask on the original grid as uint8 ``(Z, S, S)`` in model space: the one way every mask gets there.

    Stage-1 training targets, the predicted mask of :func:`~livercad.segment.infer.segment_volume` and the
    ground truth of the stage-2 cache (:func:`livercad.pipeline.stage1.case_slices`) all come through here.
    Resized bilinearly and thresholded at 0.5, i.e. consistent with how predictions are resized back
    (nearest-neighbour downsampling would shift boundaries by up to half an input voxel), so a predicted and a
    reference mask compared in model space differ only where the masks do.
    """
    soft = _plain(prepared.from_original(np.asarray(ref), mode="bilinear"))
    return (soft > 0.5).to(torch.uint8).contiguous()


def load_case(row: ManifestRow, cfg: Config) -> TrainingSlices:
    """Load one manifest row (image + mask) into model space as compact tensors.

    Args:
        row: a manifest row with a mask (its ``liver_labels`` and ``modality`` columns are honoured).
        cfg: the run config (``preprocess`` section, ``data.liver_labels``: :func:`row_liver_labels`; the case's
            images ``segment.model.images`` and ``data.channels_axis``: :func:`livercad.io.channels.load_images`).

    Raises:
        InputError: the row has no mask, or a file cannot be read, or its images are missing or off the grid.
    """
    from livercad.io.channels import load_images
    from livercad.io.image import load_image
    from livercad.io.nifti import load_mask

    if row.mask is None:
        raise InputError(row.image, f"case '{row.case_id}' has no ground-truth mask; segmentation training needs one")
    volume = load_images(row, cfg.segment.model.images, load_image, channels_axis=cfg.data.channels_axis)
    ref = load_mask(row.mask, volume, liver_labels=row_liver_labels(row, cfg.data.liver_labels))
    pp = cfg.preprocess
    prepared = prepare(volume, modality=row_modality(row, pp.modality), image_size=pp.image_size,
                       ct_window=pp.ct_window, percentiles=pp.percentiles)
    return TrainingSlices(str(row.case_id), _plain(prepared.image).to(torch.float16), model_space_mask(prepared, ref))


def load_cases(rows: Sequence[ManifestRow], cfg: Config) -> list[TrainingSlices]:
    """Load every row once (see :func:`load_case`)."""
    cases = [load_case(r, cfg) for r in rows]
    logger.info("loaded %d cases (%d slices)", len(cases), sum(c.image.shape[0] for c in cases))
    return cases


def anatomy_augment(seed: int = 0, *, prob: float = 0.8, crop_size: int | None = None,
                    intensity: bool = False) -> Compose:
    """Augmentation suited to anatomy, applied jointly to ``{"image", "mask"}`` (channel-first tensors).

    Small rotations (±10°) and scales (±10 %) with the same parameters for image and mask (mask
    resampled with nearest neighbour), intensity scale/shift jitter and Gaussian noise on the image.
    No left-right (or any) flips. ``crop_size`` adds a random square crop of that size (MONAI
    ``RandSpatialCropd``; slices smaller than it are left whole): the fully convolutional network then
    trains on fewer pixels per step and still predicts whole slices. ``intensity`` adds the contrast
    randomisation of :func:`intensity_augment` (``segment.intensity_augment``).

    Example:
        >>> aug = anatomy_augment(0)
        >>> out = aug({"image": torch.zeros(3, 32, 32), "mask": torch.zeros(1, 32, 32)})
        >>> tuple(out["image"].shape), tuple(out["mask"].shape)
        ((3, 32, 32), (1, 32, 32))
    """
    keys = ["image", "mask"]
    t = Compose([
        RandAffined(keys, prob=prob, rotate_range=(math.radians(10),), scale_range=(0.1, 0.1),
                    mode=("bilinear", "nearest"), padding_mode="border"),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        RandGaussianNoised("image", std=0.05, prob=0.3),
        *(intensity_augment() if intensity else []),
        *([RandSpatialCropd(keys, roi_size=(crop_size, crop_size), random_size=False)] if crop_size else []),
    ])
    t.set_random_state(seed=seed)
    return t


def intensity_augment() -> list[Any]:
    """Random contrast of the normalised image on top of the phantom's own randomisation (MONAI transforms).

    A random gamma (0.6-1.6), a random monotone remapping of the intensity histogram (MONAI
    ``RandHistogramShiftd``, 4-8 control points) and random in-plane blur (sigma 0.3-1.0 px), each in a
    share of the samples. They change how tissues look relative to each other, not where they are, so
    the network leans on shape and context (SynthSeg's argument) rather than on one rendering's grey
    levels. The mask is untouched.
    """
    return [
        RandAdjustContrastd("image", gamma=(0.6, 1.6), prob=0.3),
        RandHistogramShiftd("image", num_control_points=(4, 8), prob=0.25),
        RandGaussianSmoothd("image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), prob=0.2),
    ]


def _plain(t: Any) -> torch.Tensor:
    """A plain float tensor (MONAI returns MetaTensors, which collate and compute more slowly)."""
    t = torch.as_tensor(t)
    return (t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)).float()


class SliceDataset(Dataset):
    """2.5-D slices of several cases: item ``i`` is ``(stack (C,S,S) float32, mask (1,S,S) float32, case index)``.

    Args:
        cases: the loaded cases.
        context: neighbours each side (``C = 2*context + 1``, times the number of images of a multi-image
            case; edges repeat the border slice).
        augment: optional joint transform (e.g. :func:`anatomy_augment`).
    """

    def __init__(self, cases: Sequence[TrainingSlices], *, context: int, augment: Augment | None = None) -> None:
        self.cases = list(cases)
        self.context = context
        self.augment = augment
        self.index = [(c, z) for c, case in enumerate(self.cases) for z in range(case.image.shape[0])]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        c, z = self.index[i]
        case = self.cases[c]
        x = context_stack(case.image, [z], self.context)[0].float()
        y = case.mask[z][None].float()
        if self.augment is not None:
            out = self.augment({"image": x, "mask": y})
            x, y = _plain(out["image"]), _plain(out["mask"])
        return x.contiguous(), y.contiguous(), c

    def liver_flags(self) -> torch.Tensor:
        """Bool per item: whether that slice contains liver."""
        per_case = [case.liver_slices for case in self.cases]
        return torch.cat(per_case) if per_case else torch.zeros(0, dtype=torch.bool)


def balanced_sampler(flags: torch.Tensor, liver_fraction: float, num_samples: int,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Sampler drawing liver-bearing slices with probability ``liver_fraction`` (with replacement).

    When one group is empty all draws come from the other.

    Example:
        >>> s = balanced_sampler(torch.tensor([True, False, False, False]), 0.5, 1000, torch.Generator().manual_seed(0))
        >>> 400 < sum(1 for i in s if i == 0) < 600
        True
    """
    flags = flags.bool()
    n_liver, n_other = int(flags.sum()), int((~flags).sum())
    if n_liver + n_other == 0:
        raise InputError(None, "no training slices: the training split is empty")
    frac = liver_fraction if n_liver and n_other else (1.0 if n_liver else 0.0)
    w_liver = frac / n_liver if n_liver else 0.0
    w_other = (1.0 - frac) / n_other if n_other else 0.0
    weights = torch.where(flags, torch.tensor(w_liver), torch.tensor(w_other)).double()
    return WeightedRandomSampler(weights, num_samples=num_samples, replacement=True, generator=generator)


__all__ = ["model_space_mask", "row_liver_labels", "row_modality", "TrainingSlices", "SliceDataset", "load_case",
           "load_cases", "anatomy_augment", "intensity_augment", "balanced_sampler"]

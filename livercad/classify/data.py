"""Stage 2's inputs from its cache (:class:`~livercad.types.CaseSlices`): the slice selection shared by training
and inference, the region inputs, labels and sampling weights.

Stage 1 runs once per case and builds the ``CaseSlices`` (:func:`livercad.pipeline.stage1.case_slices`: normalised
canonical slices, predicted probability and mask, optional ground truth, all in model space). Every region
mode, strategy and seed of an ablation is then computed from the same ``CaseSlices`` (cheap: a few
milliseconds per case for the region inputs).

Slice selection (:func:`select_slices`), identical in training and inference:
    * liver-bearing slices: mask area >= ``min_fraction`` of the slice (S × S pixels);
    * none qualifies but the mask is not empty: the slice with the largest liver area;
    * the mask is empty (stage 1 found no liver): the middle 20 % of slices (at least one), equal
      weights, and region ``full`` (``mask-channel`` keeps its all-zero mask channel), logged.
The ``oracle-mask`` region selects and masks with the ground truth instead of the prediction.

Example:
    >>> import torch
    >>> m = torch.zeros(4, 8, 8, dtype=torch.uint8); m[1:3, 2:6, 2:6] = 1
    >>> cs = CaseSlices("c1", "p1", 0, torch.rand(4, 8, 8), m.half(), m)
    >>> sel = select_slices(cs, 0.1)
    >>> sel.index.tolist(), sel.areas.tolist(), sel.region_override
    ([1, 2], [16.0, 16.0], None)
    >>> tuple(case_inputs(cs, region="mask", size=16)[0].shape)
    (2, 3, 16, 16)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from livercad.classify.regions import apply_region, get_region
from livercad.config import ClassifyConfig
from livercad.errors import InputError
from livercad.preprocess.prepare import context_stack
from livercad.types import CaseSlices

logger = logging.getLogger(__name__)

CONTEXT = 1  # 2.5-D: slice ± 1 -> 3 channels, so ImageNet 3-channel stems fit
EMPTY_MASK_SHARE = 0.2


@dataclass(frozen=True)
class SliceSelection:
    """Which slices of a case are classified, their liver areas (pixels) and any region fallback."""

    index: torch.Tensor
    areas: torch.Tensor
    region_override: str | None = None


def select_slices(case: CaseSlices, min_fraction: float, *, use_gt: bool = False) -> SliceSelection:
    """The liver-bearing slices of a case and their liver areas (see the module docstring for fallbacks).

    Raises:
        InputError: ``use_gt`` but the case has no ground truth.
    """
    ref = case.gt if use_gt else case.mask
    if ref is None:
        raise InputError(None, f"case '{case.case_id}': region 'oracle-mask' needs a ground-truth mask, got none")
    z, s1, s2 = ref.shape
    areas = ref.reshape(z, -1).float().sum(1)
    keep = torch.nonzero(areas >= min_fraction * s1 * s2).flatten()
    if keep.numel():
        return SliceSelection(keep, areas[keep])
    if areas.max() > 0:
        best = torch.argmax(areas).view(1)
        return SliceSelection(best, areas[best])
    n = max(1, round(EMPTY_MASK_SHARE * z))
    start = (z - n) // 2
    logger.warning("case %s: empty liver mask; classifying the middle %d slice(s) unmasked", case.case_id, n)
    return SliceSelection(torch.arange(start, start + n), torch.ones(n), "full")


def case_inputs(case: CaseSlices, *, region: str, size: int, margin: float = 0.1, min_fraction: float = 0.01,
                background: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier inputs of one case: ``(N, C, size, size)`` float32 and the liver areas ``(N,)``.

    All selected slices go through the region function together, so ``crop`` uses one bounding box
    per case.
    """
    get_region(region)
    oracle = region == "oracle-mask"
    sel = select_slices(case, min_fraction, use_gt=oracle)
    mode = region
    if sel.region_override is not None and region != "mask-channel":
        mode = sel.region_override
    x = context_stack(case.image, sel.index, CONTEXT).float()
    gt = case.gt[sel.index] if case.gt is not None else None
    out = apply_region(mode, x, case.prob[sel.index].float(), case.mask[sel.index], gt, size=size,
                       margin=margin, background=background)
    return out, sel.areas


def case_images(cases: list[CaseSlices]) -> tuple[str, ...]:
    """The co-registered images every case carries (``CaseSlices.images``), the same for all.

    A classifier takes ``2*CONTEXT + 1`` channels of each (before the region mode's own channels).

    Raises:
        InputError: two cases carry different images.

    Example:
        >>> m = torch.zeros(2, 4, 4, dtype=torch.uint8)
        >>> case_images([CaseSlices("a", "a", 0, torch.zeros(2, 2, 4, 4), m.half(), m, images=("image", "image_art"))])
        ('image', 'image_art')
    """
    found = {c.images for c in cases}
    if len(found) > 1:
        raise InputError(None, f"stage-2 cases carry different images: {sorted(found)}; train on one kind of case")
    return next(iter(found), ("image",))


def stack_inputs(cases: list[CaseSlices], cfg: ClassifyConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:func:`case_inputs` of every case with a ``ClassifyConfig``'s region settings (inputs as float16)."""
    xs, areas = [], []
    for c in cases:
        x, a = case_inputs(c, region=cfg.region, size=cfg.image_size, margin=cfg.crop_margin,
                           min_fraction=cfg.min_liver_fraction)
        xs.append(x.half())
        areas.append(a)
    return xs, areas


def slice_labels(cases: list[CaseSlices], xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-slice class labels and case indices for the stacked inputs ``xs`` of ``cases``."""
    if not xs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    y = torch.cat([torch.full((len(x),), int(c.label), dtype=torch.long) for c, x in zip(cases, xs, strict=True)])
    return y, torch.cat([torch.full((len(x),), i, dtype=torch.long) for i, x in enumerate(xs)])


def resolve_labels(cases: list[CaseSlices], classes: list[str]) -> tuple[list[CaseSlices], dict[str, int]]:
    """Map every case's label onto ``classes``; returns (labelled cases, counts of skipped labels).

    A case with ``label_name`` is relabelled by name (cases whose name is not a class are skipped);
    otherwise its integer ``label`` is used as is (``None`` skipped, out of range -> InputError).
    """
    kept: list[CaseSlices] = []
    skipped: Counter[str] = Counter()
    for c in cases:
        if c.label_name is not None:
            if c.label_name not in classes:
                skipped[str(c.label_name)] += 1
                continue
            c = dataclasses.replace(c, label=classes.index(c.label_name))
        elif c.label is None:
            skipped["<none>"] += 1
            continue
        elif not 0 <= int(c.label) < len(classes):
            raise InputError(None, f"case '{c.case_id}': label index {c.label} is outside the {len(classes)} "
                                   f"classes {classes}")
        kept.append(c)
    return kept, dict(skipped)


def augment_batch(x: torch.Tensor, image_channels: int) -> torch.Tensor:
    """Random small affine per sample + a slight intensity jitter on the first ``image_channels`` channels.

    The jitter is kept small (±5 % contrast, ±0.02 brightness: about ±4 HU in the CT window) because
    absolute intensity is diagnostic (steatosis lowers CT attenuation by tens of HU).
    """
    n = x.shape[0]
    ang = (torch.rand(n) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(n) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2) * 2 - 1) * 0.12  # grid units: ±6 % of the width
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * 0.05
    bias = (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * 0.02
    img = out[:, :image_channels] * gain + bias
    return torch.cat([img, out[:, image_channels:]], 1)


def sample_weights(case_of_slice: np.ndarray, labels: np.ndarray, balance_classes: bool) -> torch.Tensor:
    """Per-slice sampling weights: cases equally likely, and classes too when ``balance_classes``.

    Example:
        >>> sample_weights(np.array([0, 0, 1]), np.array([0, 0, 1]), True).tolist()
        [0.25, 0.25, 0.5]
    """
    _, inv, per_case = np.unique(case_of_slice, return_inverse=True, return_counts=True)
    w = 1.0 / per_case[inv]
    if balance_classes:
        case_label = {c: lab for c, lab in zip(case_of_slice, labels, strict=True)}
        cls, n_cases = np.unique(list(case_label.values()), return_counts=True)
        per_class = dict(zip(cls, n_cases, strict=True))
        w = w / np.array([per_class[lab] for lab in labels])
    return torch.as_tensor(w / w.sum(), dtype=torch.float64)


__all__ = ["CONTEXT", "SliceSelection", "augment_batch", "case_images", "case_inputs", "resolve_labels",
           "sample_weights", "select_slices", "slice_labels", "stack_inputs"]

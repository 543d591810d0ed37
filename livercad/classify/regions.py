"""Region modes: what part of a slice the classifier sees, all computed from the same stage-1 output.

Each mode is one small function with the same signature::

    fn(image, prob, mask, gt, *, size, margin=0.1, background=None) -> (N, C_out, size, size) float32

* ``image``: ``(N, C, S, S)`` 2.5-D stacks (``context_stack``: slice ± 1 as 3 channels) or ``(N, S, S)``.
* ``prob``: ``(N, S, S)`` predicted liver probability; ``mask``: ``(N, S, S)`` predicted binary mask;
  ``gt``: ``(N, S, S)`` ground-truth mask or ``None`` (only ``oracle-mask`` needs it).
* ``background``: the value put outside the liver; ``None`` means the minimum of ``image`` (air on CT,
  the darkest value on MR/US), so a masked slice looks like the liver floating in empty space.

Masking blends towards the background, ``bg + (x - bg) * w`` with ``w`` the (soft) mask: with
``w`` in {0, 1} this keeps the liver and sets everything else to ``bg``; with ``w = prob`` it is the
spec's "image × probability" measured from the background level (identical to ``x * prob`` when
``bg = 0``).

Crops use **one in-plane bounding box per call** — the union of the mask over all the slices passed
— so every slice of a case shares it (call once per case). The box is grown by ``margin`` × its side
on each edge, made square (no aspect distortion after resizing) and kept inside the image; an empty
mask gives the full slice.

Example:
    >>> import torch
    >>> img = torch.rand(2, 3, 16, 16); m = torch.zeros(2, 16, 16); m[:, 4:8, 4:8] = 1
    >>> x = REGIONS["mask-crop"](img, m, m, None, size=8)
    >>> tuple(x.shape), region_channels("mask-channel", 3)
    ((2, 3, 8, 8), 4)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from livercad.errors import ConfigError, InputError, did_you_mean

__all__ = ["REGIONS", "RegionFn", "apply_region", "get_region", "liver_bbox", "region_channels"]


class RegionFn(Protocol):
    """The signature shared by every region mode."""

    def __call__(self, image: torch.Tensor, prob: torch.Tensor, mask: torch.Tensor, gt: torch.Tensor | None,
                 *, size: int, margin: float = 0.1, background: float | None = None) -> torch.Tensor: ...


def _prep(image: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(image).float()
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        shape = tuple(x.shape)
        raise InputError(None, f"region input: expected image (N, C, S, S) or (N, S, S), got shape {shape}")
    return x


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x.contiguous()
    down = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=down)


def _blend(x: torch.Tensor, weight: torch.Tensor, background: float | None) -> torch.Tensor:
    bg = float(x.amin()) if background is None else float(background)
    w = torch.as_tensor(weight).float()[:, None]
    return bg + (x - bg) * w


def liver_bbox(mask: torch.Tensor, margin: float = 0.1) -> tuple[int, int, int, int] | None:
    """Square in-plane box ``(r0, r1, c0, c1)`` around the union of ``mask`` ``(N, S, S)`` plus margin.

    Returns ``None`` for an empty mask.

    Example:
        >>> m = torch.zeros(1, 20, 20); m[0, 5:10, 8:12] = 1
        >>> liver_bbox(m, margin=0.0)
        (5, 10, 8, 13)
    """
    any_ = torch.as_tensor(mask).reshape(-1, *mask.shape[-2:]).bool().any(0)
    rows, cols = torch.nonzero(any_.any(1)).flatten(), torch.nonzero(any_.any(0)).flatten()
    if rows.numel() == 0:
        return None
    h, w = any_.shape
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    side = max(r1 - r0, c1 - c0)
    side = min(max(1, round(side * (1 + 2 * margin))), h, w)
    cr, cc = (r0 + r1) / 2, (c0 + c1) / 2
    top = int(min(max(round(cr - side / 2), 0), h - side))
    left = int(min(max(round(cc - side / 2), 0), w - side))
    return top, top + side, left, left + side


def _crop(x: torch.Tensor, box: tuple[int, int, int, int] | None) -> torch.Tensor:
    return x if box is None else x[..., box[0]:box[1], box[2]:box[3]]


def region_full(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """The whole slice, resized (no segmentation used).

    Example:
        >>> region_full(torch.ones(2, 3, 8, 8), None, None, None, size=4).shape
        torch.Size([2, 3, 4, 4])
    """
    return _resize(_prep(image), size)


def region_mask(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """Outside the predicted liver set to the background value.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, :2] = 1
        >>> region_mask(torch.ones(1, 4, 4), m, m, None, size=4, background=0.0)[0, 0, 2:].abs().sum().item()
        0.0
    """
    return _resize(_blend(_prep(image), mask, background), size)


def region_prob_mask(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """Soft mask: the image faded to the background by the predicted liver probability.

    Example:
        >>> p = torch.full((1, 4, 4), 0.5)
        >>> region_prob_mask(torch.ones(1, 4, 4), p, p > 0, None, size=4, background=0.0).mean().item()
        0.5
    """
    return _resize(_blend(_prep(image), prob, background), size)


def region_crop(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """The liver's bounding box (union over the slices passed) plus margin, resized; no masking.

    Example:
        >>> m = torch.zeros(1, 16, 16); m[0, 2:6, 2:6] = 1
        >>> region_crop(torch.rand(1, 16, 16), m, m, None, size=8, margin=0.0).shape
        torch.Size([1, 1, 8, 8])
    """
    return _resize(_crop(_prep(image), liver_bbox(mask, margin)), size)


def region_mask_crop(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """Masked to the liver, then cropped to its bounding box and resized.

    Example:
        >>> m = torch.zeros(1, 16, 16); m[0, 2:6, 2:6] = 1
        >>> region_mask_crop(torch.rand(1, 16, 16), m, m, None, size=8).shape
        torch.Size([1, 1, 8, 8])
    """
    x = _blend(_prep(image), mask, background)
    return _resize(_crop(x, liver_bbox(mask, margin)), size)


def region_mask_channel(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """The full slice plus the predicted mask as one extra input channel.

    Example:
        >>> region_mask_channel(torch.rand(2, 3, 8, 8), None, torch.ones(2, 8, 8), None, size=8).shape
        torch.Size([2, 4, 8, 8])
    """
    x = _prep(image)
    m = torch.as_tensor(mask).float()[:, None]
    return _resize(torch.cat([x, m], dim=1), size)


def region_oracle_mask(image: Tensor, prob: Tensor | None, mask: Tensor | None, gt: Tensor | None, *,
    size: int, margin: float = 0.1, background: float | None = None,
) -> Tensor:
    """Like ``mask`` but with the ground-truth mask (evaluation only: needs ``gt``).

    Example:
        >>> g = torch.ones(1, 4, 4)
        >>> region_oracle_mask(torch.ones(1, 4, 4), None, None, g, size=4).shape
        torch.Size([1, 1, 4, 4])
    """
    if gt is None:
        raise InputError(None, "region 'oracle-mask' needs a ground-truth mask, got none (use 'mask')")
    return region_mask(image, prob, gt, None, size=size, margin=margin, background=background)


REGIONS: dict[str, Callable[..., torch.Tensor]] = {
    "full": region_full,
    "mask": region_mask,
    "prob-mask": region_prob_mask,
    "crop": region_crop,
    "mask-crop": region_mask_crop,
    "mask-channel": region_mask_channel,
    "oracle-mask": region_oracle_mask,
}
_EXTRA_CHANNELS = {"mask-channel": 1}


def get_region(mode: str) -> Callable[..., torch.Tensor]:
    """The region function for ``mode``; an unknown name raises ConfigError with a suggestion.

    Example:
        >>> get_region("crop").__name__
        'region_crop'
    """
    if mode not in REGIONS:
        hint = did_you_mean(mode, list(REGIONS))
        names = ", ".join(REGIONS)
        raise ConfigError(f"classify.region: unknown region mode '{mode}'; {hint}available: {names}")
    return REGIONS[mode]


def region_channels(mode: str, base_channels: int = 3) -> int:
    """Number of classifier input channels a mode produces from ``base_channels`` image channels.

    Example:
        >>> region_channels("mask", 3), region_channels("mask-channel", 3)
        (3, 4)
    """
    get_region(mode)
    return base_channels + _EXTRA_CHANNELS.get(mode, 0)


def apply_region(mode: str, image: torch.Tensor, prob: torch.Tensor | None, mask: torch.Tensor | None,
                 gt: torch.Tensor | None = None, *, size: int, margin: float = 0.1,
                 background: float | None = None) -> torch.Tensor:
    """Run region ``mode`` on the slices of one case; returns ``(N, C_out, size, size)`` float32.

    Example:
        >>> apply_region("full", torch.zeros(3, 3, 8, 8), None, None, size=4).shape
        torch.Size([3, 3, 4, 4])
    """
    return get_region(mode)(image, prob, mask, gt, size=size, margin=margin, background=background)

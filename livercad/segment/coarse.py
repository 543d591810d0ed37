"""Coarse-to-fine slice selection for stage-1 inference (``inference.coarse_to_fine``).

The liver occupies one contiguous run of axial slices (a third to two thirds of an abdominal volume).
The coarse pass runs the segmenter on every ``stride``-th slice only (``stride`` ≈ :data:`COARSE_MM` of
the volume's slice spacing, and always the last slice); the fine pass then runs every remaining slice
from one stride before the first liver-bearing coarse slice to one stride after the last one. Slices
outside that range were bracketed by liver-free coarse slices and get probability 0. The result equals
the full pass wherever the coarse pass saw the liver's cranio-caudal extent; a liver tip thinner than one
stride that lies entirely between two liver-free coarse slices is the only thing it can miss (its Dice
cost is measured by ``benchmarks/bench_pipeline.py``).

Example:
    >>> coarse_stride(5.0), coarse_stride(1.0), coarse_stride(20.0)
    (3, 15, 1)
    >>> fine_slices([6, 9], n=20, stride=3)
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

logger = logging.getLogger(__name__)

#: Spacing of the coarse pass in millimetres (the liver spans ~150 mm cranio-caudally: ~10 coarse hits).
COARSE_MM = 15.0


def coarse_stride(spacing_z: float, mm: float = COARSE_MM) -> int:
    """Slices between two coarse samples: ``round(mm / spacing_z)``, at least 1."""
    return max(1, int(round(mm / max(float(spacing_z), 1e-6))))


def coarse_slices(n: int, stride: int) -> list[int]:
    """Indices of the coarse pass: ``0, stride, 2*stride, ...`` and the last slice.

    Example:
        >>> coarse_slices(10, 4)
        [0, 4, 8, 9]
    """
    return sorted(set(range(0, n, max(1, stride))) | ({n - 1} if n else set()))


def fine_slices(hits: Sequence[int], *, n: int, stride: int) -> list[int]:
    """All slices from one stride before the first hit to one stride after the last (clipped to ``[0, n)``)."""
    if not hits:
        return []
    lo, hi = max(0, min(hits) - stride), min(n - 1, max(hits) + stride)
    return list(range(lo, hi + 1))


def coarse_to_fine(run: Callable[[list[int]], None], out: torch.Tensor, *, spacing_z: float,
                   threshold: float) -> int:
    """Fill the probability stack ``out`` ``(Z, S, S)`` (zeros on entry) with a coarse then a fine pass.

    Args:
        run: computes the given slice indices into ``out``.
        out: the probability stack, all zeros on entry; skipped slices stay 0.
        spacing_z: slice spacing in mm (sets the stride, see :func:`coarse_stride`).
        threshold: a coarse slice "has liver" when some voxel reaches this probability.

    Returns:
        The number of slices the network was run on.
    """
    n = int(out.shape[0])
    stride = coarse_stride(spacing_z)
    first = coarse_slices(n, stride)
    if stride <= 1 or len(first) >= n:
        run(list(range(n)))
        return n
    run(first)
    peak = out[first].flatten(1).amax(dim=1)
    hits = [z for z, p in zip(first, peak.tolist(), strict=True) if p >= threshold]
    done = set(first)
    rest = [z for z in fine_slices(hits, n=n, stride=stride) if z not in done]
    if rest:
        run(rest)
    logger.debug("coarse-to-fine: %d of %d slices (stride %d, %d coarse hits)", len(first) + len(rest), n,
                 stride, len(hits))
    return len(first) + len(rest)


__all__ = ["COARSE_MM", "coarse_slices", "coarse_stride", "coarse_to_fine", "fine_slices"]

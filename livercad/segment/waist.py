"""Cut a liver mask at a narrow waist along the body axis, where something that is not liver is attached.

The liver's axial cross-section grows from the dome to its widest slice and then shrinks to the inferior
tip: its area profile along the body axis has one peak. A segmentation that leaks through the thin
inferior tip into an adjacent structure of similar grey (the ascending colon, collapsed bowel, the
bladder further down; on a real abdominal CT, where the scan continues 20 cm below the liver) keeps
one 3-D component, so keeping the largest component does not remove the leak, but the area profile shows
it: it shrinks to a waist and then grows again. :func:`waist_cut` walks from the widest slice towards each
end of the volume and removes everything beyond a waist when the profile narrows to a small share of the
widest slice and then grows again by a clear amount (both relative to the widest slice, so the rule does not
depend on the voxel size). A liver whose profile keeps shrinking, a Riedel's lobe included, is left as it
is, and so is a volume of fewer than :data:`MIN_SLICES` slices (a thin slab or a 2-D image), whose profile
says nothing about the tip.
"""

from __future__ import annotations

import numpy as np

#: The waist is at most this share of the widest slice's area.
WAIST_SHARE = 0.25
#: Beyond the waist, the area grows to at least this multiple of the waist's area ...
RISE_FACTOR = 2.0
#: ... and by at least this share of the widest slice's area.
RISE_SHARE = 0.05
#: Volumes with fewer liver-bearing slices are never cut.
MIN_SLICES = 8


def _waist_index(areas: np.ndarray) -> int | None:
    """Index into ``areas`` (widest slice first, then outward) of the waist beyond which to cut, or None."""
    peak = float(areas[0])
    low, low_at = peak, 0
    for i, a in enumerate(areas):
        if a <= low:
            low, low_at = float(a), i
        elif low <= WAIST_SHARE * peak and a >= RISE_FACTOR * low and a - low >= RISE_SHARE * peak:
            return low_at
    return None


def waist_cut(mask: np.ndarray, axis: int = 2) -> bool:
    """Remove what lies beyond a narrow waist of ``mask`` along ``axis`` (the body axis), in place.

    Args:
        mask: uint8 or bool 3-D liver mask on the canonical grid (one component, e.g. after keeping the
            largest one).
        axis: the body (cranio-caudal) axis; 2 for the canonical (X, Y, Z) grid.

    Returns:
        Whether anything was cut: the slices beyond each waist (towards the nearer end of the volume) are
        cleared in ``mask``; beyond a waist there is always mask, so a waist found is a cut made.

    Example:
        >>> m = np.zeros((20, 20, 30), np.uint8)
        >>> m[2:18, 2:18, 15:30] = 1   # the liver, widest at the top
        >>> m[9:11, 9:11, 10:15] = 1   # its thin tip
        >>> m[5:15, 5:15, 0:10] = 1    # a leak into something below
        >>> waist_cut(m), int(m[..., :10].sum()), int(m[..., 10:].sum())
        (True, 0, 3860)
    """
    if mask.ndim != 3:
        return False
    view = np.moveaxis(mask, axis, -1)  # a view: clearing its slices clears the mask's
    areas = np.count_nonzero(view.reshape(-1, view.shape[-1]), axis=0)
    if np.count_nonzero(areas) < MIN_SLICES:
        return False
    top = int(np.argmax(areas))
    below = _waist_index(areas[top::-1])
    if below is not None:
        view[..., : top - below] = 0
    above = _waist_index(areas[top:])
    if above is not None:
        view[..., top + above + 1:] = 0
    return below is not None or above is not None


__all__ = ["waist_cut", "WAIST_SHARE", "RISE_FACTOR", "RISE_SHARE", "MIN_SLICES"]

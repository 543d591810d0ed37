"""Per-case segmentation metrics (Dice, IoU, HD95, mean surface distance, volume) and cohort summaries.

All functions are pure: they take binary masks as numpy arrays (``bool`` or 0/1, 2-D or 3-D, same
shape) plus the voxel ``spacing`` in millimetres, and return Python floats. The overlap computations are
MONAI's (:func:`monai.metrics.compute_dice`, ``compute_iou``); the surface distances use MONAI's pieces
(``get_mask_edges``, ``get_surface_distance``: the edges and distances ``compute_hausdorff_distance`` uses).

Surface of a mask: its edge voxels (mask minus its erosion), computed **as if the mask continued beyond
the array** (padded by edge replication before the erosion, cropped back): a voxel on a face of the array
(first or last slice, row or column) is surface only where the mask ends inside the array. A scan's cut
through the liver is no surface: on a 3-slice CT the top and bottom faces were most of the "surface", at
distance ~0, and hid a large in-plane error. A mask filling the whole array has no such edge; then the
faces count (for both masks, MONAI's definition). HD95 and MSD are also given **in-plane**
(``*_inplane_mm``): 2-D distances within each axial slice (last axis) holding both masks, pooled.

Empty-mask policy (explicit, never silent):

* Dice / IoU, **both** masks empty: ``empty="nan"`` (default) -> ``nan``, ``"one"`` -> 1.0,
  ``"zero"`` -> 0.0. Exactly one mask empty -> 0.0 whatever the policy.
* HD95 / mean surface distance: ``nan`` whenever either mask is empty (a distance to nothing is
  undefined; MONAI would return ``inf`` or ``nan`` with a warning). Cohort summaries drop and count them.
  The in-plane figures are also ``nan`` when no axial slice holds both masks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from monai.metrics import compute_dice, compute_iou
from monai.metrics.utils import get_mask_edges, get_surface_distance

from livercad.errors import InputError
from livercad.metrics.stats import bootstrap_weights, percentile_ci

logger = logging.getLogger(__name__)

EmptyPolicy = Literal["nan", "one", "zero"]
_EMPTY_VALUES = {"nan": float("nan"), "one": 1.0, "zero": 0.0}


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim not in (2, 3):
        raise InputError(None, f"{name}: expected a 2-D or 3-D mask, got shape {arr.shape}")
    if arr.dtype != bool:
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            raise InputError(None, f"{name}: expected a binary mask (bool or 0/1), got value {arr[bad][0]!r}")
        arr = arr.astype(bool)
    return arr


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, r = _as_mask(pred, "pred"), _as_mask(ref, "ref")
    if p.shape != r.shape:
        raise InputError(None, f"pred and ref must have the same shape, got {p.shape} and {r.shape}")
    return p, r


def _crop(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their union's bounding box plus a 1-voxel margin (metrics are unchanged).

    MONAI crops too, but only after several full-volume passes in torch; this keeps large CT grids cheap.
    """
    union = p | r
    if not union.any():
        return p, r
    box = []
    for ax in range(union.ndim):
        idx = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
        box.append(slice(max(int(idx[0]) - 1, 0), int(idx[-1]) + 2))
    return p[tuple(box)], r[tuple(box)]


def _spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InputError(None, f"spacing: expected {ndim} positive mm values, got {tuple(spacing)}")
    return sp


def _bc(mask: np.ndarray) -> torch.Tensor:
    """Batch-first, channel-first (1, 1, *spatial) layout; the single channel is the foreground."""
    return torch.from_numpy(np.ascontiguousarray(mask)[None, None])


def _overlap(fn: Callable[..., torch.Tensor], pred: np.ndarray, ref: np.ndarray, empty: EmptyPolicy) -> float:
    if empty not in _EMPTY_VALUES:
        raise InputError(None, f"empty: expected one of {sorted(_EMPTY_VALUES)}, got {empty!r}")
    p, r = _crop(*_pair(pred, ref))
    if not p.any() and not r.any():
        return _EMPTY_VALUES[empty]
    # ignore_empty=False: an empty reference with a non-empty prediction scores 0, not nan.
    return float(fn(_bc(p), _bc(r), include_background=True, ignore_empty=False)[0, 0])


def dice(pred: np.ndarray, ref: np.ndarray, *, empty: EmptyPolicy = "nan") -> float:
    """Dice coefficient ``2|P∩R| / (|P|+|R|)`` (MONAI ``compute_dice``).

    Args:
        pred: Predicted binary mask.
        ref: Reference binary mask of the same shape.
        empty: Value when both masks are empty: ``"nan"``, ``"one"`` (1.0) or ``"zero"`` (0.0).

    Returns:
        The Dice score in [0, 1] (or the ``empty`` value).

    Example:
        >>> a = np.zeros((4, 4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4, 4), bool); b[1:3] = True
        >>> round(dice(a, b), 3)
        0.5
    """
    return _overlap(compute_dice, pred, ref, empty)


def iou(pred: np.ndarray, ref: np.ndarray, *, empty: EmptyPolicy = "nan") -> float:
    """Intersection over union (Jaccard, MONAI ``compute_iou``); same empty policy as :func:`dice`.

    Example:
        >>> a = np.zeros((4, 4, 4), bool); a[:2] = True
        >>> b = np.zeros((4, 4, 4), bool); b[1:3] = True
        >>> round(iou(a, b), 3)
        0.333
    """
    return _overlap(compute_iou, pred, ref, empty)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm.

    The maximum of the two directed 95th percentiles of edge-voxel distances (the array faces are not
    surface, see the module docstring). ``nan`` when either mask is empty.

    Example:
        >>> a = np.zeros((8, 8, 8), bool); a[2:5, 2:6, 2:6] = True
        >>> hd95(a, np.roll(a, 1, axis=0), (2.0, 1.0, 1.0))
        2.0
    """
    p, r = _pair(pred, ref)
    return _surface_distances(p, r, _spacing(spacing, p.ndim))[0]


def mean_surface_distance(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric mean surface distance in mm (the mean of both directed edge-voxel distance sets pooled; the
    array faces are not surface, see the module docstring); ``nan`` if a mask is empty.

    Example:
        >>> a = np.zeros((8, 8, 8), bool); a[2:5, 2:6, 2:6] = True
        >>> mean_surface_distance(a, a, (1.0, 1.0, 1.0))
        0.0
    """
    p, r = _pair(pred, ref)
    return _surface_distances(p, r, _spacing(spacing, p.ndim))[1]


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a binary mask in millilitres (voxel count × voxel volume in mm³ / 1000).

    Example:
        >>> volume_ml(np.ones((10, 10, 10), bool), (1.0, 1.0, 2.0))
        2.0
    """
    m = _as_mask(mask, "mask")
    return float(np.count_nonzero(m)) * float(np.prod(_spacing(spacing, m.ndim))) / 1000.0


def volume_error(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Signed volume error of ``pred`` against ``ref``.

    Returns:
        ``{"abs_ml": V_pred - V_ref}`` (in mL, signed; positive = over-segmentation) and
        ``{"rel": (V_pred - V_ref) / V_ref}`` (``nan`` when the reference is empty).

    Example:
        >>> ref = np.zeros((10, 10, 10), bool); ref[:5] = True
        >>> volume_error(np.ones((10, 10, 10), bool), ref, (1.0, 1.0, 1.0))
        {'abs_ml': 0.5, 'rel': 1.0}
    """
    p, r = _pair(pred, ref)
    vp, vr = volume_ml(p, spacing), volume_ml(r, spacing)
    return {"abs_ml": vp - vr, "rel": (vp - vr) / vr if vr > 0 else float("nan")}


def _edges(p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge voxels of both masks (MONAI ``get_mask_edges``), the array faces not being surface.

    Both masks are padded by edge replication, eroded and cropped back; if a mask is then left without
    edges (it fills the array), the plain edges of both, faces included, are used.
    """
    inner = (slice(1, -1),) * p.ndim
    ep, er = get_mask_edges(np.pad(p, 1, mode="edge"), np.pad(r, 1, mode="edge"), crop=False)
    ep, er = ep[inner], er[inner]
    if not (ep.any() and er.any()):
        ep, er = get_mask_edges(p, r, crop=False)
    return ep, er


def _directed(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each edge voxel of ``p`` to the edge of ``r`` and back (MONAI, exact Euclidean)."""
    ep, er = _edges(p, r)
    return (np.asarray(get_surface_distance(ep, er, spacing=sp), np.float64),
            np.asarray(get_surface_distance(er, ep, spacing=sp), np.float64))


def _hd_msd(d_pr: np.ndarray, d_rp: np.ndarray) -> tuple[float, float]:
    """Symmetric HD95 (max of the two directed 95th percentiles) and MSD (mean of both pooled)."""
    hd = max(float(np.percentile(d_pr, 95)), float(np.percentile(d_rp, 95)))
    return hd, float(np.concatenate([d_pr, d_rp]).mean())


def _surface_distances(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float]:
    """3-D (2-D for 2-D masks) HD95 and MSD in mm; ``nan`` if a mask is empty."""
    if not (p.any() and r.any()):
        return float("nan"), float("nan")
    return _hd_msd(*_directed(*_crop(p, r), sp))


def _inplane_distances(p: np.ndarray, r: np.ndarray, sp: tuple[float, ...]) -> tuple[float, float]:
    """HD95 and MSD in mm of the 2-D distances within each axial slice holding both masks, pooled."""
    if p.ndim == 2:
        p, r, sp = p[:, :, None], r[:, :, None], (*sp, 1.0)
    p, r = _crop(p, r)
    both = np.flatnonzero(p.any(axis=(0, 1)) & r.any(axis=(0, 1)))
    if both.size == 0:
        return float("nan"), float("nan")
    pairs = [_directed(p[:, :, z], r[:, :, z], sp[:2]) for z in both]
    return _hd_msd(np.concatenate([d[0] for d in pairs]), np.concatenate([d[1] for d in pairs]))


def segmentation_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """All per-case segmentation metrics at once (3-D edges and distances computed a single time).

    Returns:
        dict with ``dice``, ``iou``, ``hd95_mm``, ``msd_mm`` (3-D, the array faces not being surface),
        ``hd95_inplane_mm``, ``msd_inplane_mm`` (per axial slice holding both masks, pooled; see the module
        docstring), ``volume_ml`` (prediction), ``ref_volume_ml``, ``volume_error_ml`` (signed) and
        ``volume_error_rel``; the empty-mask policy is the module's default (``nan``).

    Example:
        >>> a = np.zeros((8, 8, 8), bool); a[2:6, 2:6, 2:6] = True
        >>> segmentation_metrics(a, a, (1.0, 1.0, 1.0))["dice"]
        1.0
    """
    p, r = _pair(pred, ref)
    sp = _spacing(spacing, p.ndim)
    hd, msd = _surface_distances(p, r, sp)
    hd_2d, msd_2d = _inplane_distances(p, r, sp)  # nan when no slice holds both (an empty mask included)
    verr = volume_error(p, r, sp)
    return {
        "dice": dice(p, r),
        "iou": iou(p, r),
        "hd95_mm": hd,
        "msd_mm": msd,
        "hd95_inplane_mm": hd_2d,
        "msd_inplane_mm": msd_2d,
        "volume_ml": volume_ml(p, sp),
        "ref_volume_ml": volume_ml(r, sp),
        "volume_error_ml": verr["abs_ml"],
        "volume_error_rel": verr["rel"],
    }


def summarize(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, float]:
    """Cohort summary of one per-case metric with a percentile-bootstrap CI of the mean.

    NaNs (e.g. distances of empty masks) are dropped and counted in ``n_nan``.

    Returns:
        dict with ``n`` (finite values used), ``n_nan``, ``mean``, ``median``, ``sd`` (ddof=1),
        ``min``, ``max``, ``ci_low``, ``ci_high``.

    Example:
        >>> s = summarize([0.9, 0.95, float("nan"), 0.97])
        >>> s["n"], s["n_nan"], round(s["mean"], 2)
        (3, 1, 0.94)
    """
    v = np.asarray(values, dtype=float).ravel()
    keep = v[~np.isnan(v)]
    out: dict[str, float] = {"n": int(keep.size), "n_nan": int(v.size - keep.size)}
    if keep.size == 0:
        nan = float("nan")
        return out | dict.fromkeys(("mean", "median", "sd", "min", "max", "ci_low", "ci_high"), nan)
    means = bootstrap_weights(keep.size, n_boot=n_boot, seed=seed) @ keep / keep.size
    low, high = percentile_ci(means, ci)
    return out | {
        "mean": float(keep.mean()),
        "median": float(np.median(keep)),
        "sd": float(keep.std(ddof=1)) if keep.size > 1 else float("nan"),
        "min": float(keep.min()),
        "max": float(keep.max()),
        "ci_low": low,
        "ci_high": high,
    }

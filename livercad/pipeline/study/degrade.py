"""Controlled mask degradation to a target Dice, for the ablation's mask-quality curve.

Four degradations of a ``(Z, S, S)`` liver mask, each driven by one non-negative *strength*:

* ``erode``: in-plane erosion by a Euclidean radius of ``strength`` px (2-D distance transform per slice);
* ``dilate``: in-plane dilation by ``strength`` px (never into slices without liver);
* ``shift``: in-plane translation by ``strength`` px in a fixed direction drawn per case (seeded);
* ``drop``: the liver removed from ``round(strength)`` liver-bearing slices, smallest areas first (a
  missed liver dome/tip, the typical slice-wise failure).

Dice against the ground truth never increases with the strength, so :func:`degrade_to_dice` finds, by
bisection, the strength whose Dice is closest to the target. The starting mask is the stage-1 *predicted*
mask when its Dice is at least the target, else the ground-truth mask (a prediction cannot be degraded
*up*); target 1.0 is the ground-truth mask itself. Each result records which base was used.

Example:
    >>> gt = np.zeros((4, 48, 48), np.uint8); gt[:, 8:40, 8:40] = 1
    >>> d = degrade_to_dice(gt, gt, 0.8, op="erode")  # here the "prediction" is the ground truth itself
    >>> round(d.dice, 2), d.base
    (0.8, 'pred')
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from livercad.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

OPS: tuple[str, ...] = ("erode", "dilate", "shift", "drop")


@dataclass(frozen=True)
class Degraded:
    """One degraded mask: the mask, its Dice against the ground truth, the strength and the base used."""

    mask: np.ndarray
    dice: float
    strength: float
    base: str  # "pred" | "gt"
    op: str
    target: float


def _as_bool(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
    if arr.ndim != 3:
        raise InputError(None, f"{name}: expected a (Z, S, S) mask, got shape {arr.shape}")
    return arr > 0.5


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (both empty -> 1.0); equal to ``metrics.segmentation.dice`` but ~100x
    faster, which matters inside the bisection (tests compare the two)."""
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def _edt_inside(mask: np.ndarray) -> np.ndarray:
    """Per-slice 2-D distance (px) of each liver pixel to the nearest non-liver pixel or the image edge."""
    out = np.zeros(mask.shape, np.float64)
    for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        out[z] = ndimage.distance_transform_edt(np.pad(mask[z], 1))[1:-1, 1:-1]
    return out


def _edt_outside(mask: np.ndarray) -> np.ndarray:
    """Per-slice 2-D distance (px) of each pixel to the nearest liver pixel (inf in liver-free slices)."""
    out = np.full(mask.shape, np.inf)
    for z in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
        out[z] = ndimage.distance_transform_edt(~mask[z])
    return out


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """In-plane integer translation; what leaves the image is lost, what enters is background."""
    out = np.zeros_like(mask)
    h, w = mask.shape[1:]
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src = mask[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[:, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def _op_fn(op: str, mask: np.ndarray, rng: np.random.Generator) -> tuple[Callable[[float], np.ndarray], float]:
    """The degradation as a function of strength, and the strength at which it is complete."""
    z, h, w = mask.shape
    if op == "erode":
        inside = _edt_inside(mask)
        return (lambda s: inside > s), float(inside.max())
    if op == "dilate":
        outside = _edt_outside(mask)
        return (lambda s: outside <= s), float(h + w)
    if op == "shift":
        angle = rng.uniform(0, 2 * np.pi)
        dy, dx = np.sin(angle), np.cos(angle)
        return (lambda s: _shift(mask, round(s * dy), round(s * dx))), float(h + w)
    if op == "drop":
        areas = mask.reshape(z, -1).sum(axis=1)
        order = [int(i) for i in np.argsort(areas, kind="stable") if areas[i] > 0]

        def drop(s: float) -> np.ndarray:
            out = mask.copy()
            out[order[: int(round(s))]] = False
            return out

        return drop, float(len(order))
    raise ConfigError(f"mask degradation: unknown op '{op}'; expected one of {', '.join(OPS)}")


def _bisect(fn: Callable[[float], np.ndarray], gt: np.ndarray, target: float, hi: float,
            iters: int) -> tuple[np.ndarray, float, float]:
    """Strength in [0, hi] whose Dice (non-increasing in strength) is closest to ``target``."""
    lo, d_lo = 0.0, _dice(fn(0.0), gt)
    d_hi = _dice(fn(hi), gt)
    for _ in range(iters):
        if hi - lo < 1e-2:
            break
        mid = (lo + hi) / 2
        d_mid = _dice(fn(mid), gt)
        if d_mid >= target:
            lo, d_lo = mid, d_mid
        else:
            hi, d_hi = mid, d_mid
    s = lo if abs(d_lo - target) <= abs(d_hi - target) else hi
    return fn(s), (d_lo if s == lo else d_hi), s


def degrade_to_dice(pred: Any, gt: Any, target: float, *, op: str = "erode", seed: int = 0,
                    iters: int = 30) -> Degraded:
    """Degrade a mask with ``op`` so that its Dice against ``gt`` is as close as possible to ``target``.

    Args:
        pred: ``(Z, S, S)`` predicted mask (numpy or torch, 0/1).
        gt: ``(Z, S, S)`` ground-truth mask of the same shape; must not be empty.
        target: Dice in (0, 1]; 1.0 returns the ground truth.
        op: ``erode`` | ``dilate`` | ``shift`` | ``drop``.
        seed: draws the shift direction.
        iters: bisection steps.

    Returns:
        A :class:`Degraded` (``dice`` is the achieved value; it can miss the target when the op cannot
        reach it, e.g. dropping slices of a one-slice case).

    Raises:
        InputError: shapes differ, ``gt`` is empty, or ``target`` is outside (0, 1].
        ConfigError: unknown ``op``.

    Example:
        >>> gt = np.zeros((6, 24, 24), np.uint8); gt[:, 4:20, 4:20] = 1
        >>> degrade_to_dice(gt, gt, 0.9, op="dilate").dice > 0.85
        True
    """
    p, g = _as_bool(pred, "pred"), _as_bool(gt, "gt")
    if p.shape != g.shape:
        raise InputError(None, f"degrade: pred and gt shapes differ: {p.shape} vs {g.shape}")
    if not g.any():
        raise InputError(None, "degrade: the ground-truth mask is empty; no Dice target can be reached")
    if not 0.0 < float(target) <= 1.0:
        raise InputError(None, f"degrade: target Dice must be in (0, 1], got {target}")
    if op not in OPS:
        raise ConfigError(f"mask degradation: unknown op '{op}'; expected one of {', '.join(OPS)}")
    if target >= 1.0:
        return Degraded(g.copy(), 1.0, 0.0, "gt", op, float(target))
    zs = np.flatnonzero((p | g).reshape(p.shape[0], -1).any(axis=1))  # no op puts liver in other slices
    p_sub, g_sub = p[zs[0]:zs[-1] + 1], g[zs[0]:zs[-1] + 1]
    base_name, base = ("pred", p_sub) if _dice(p_sub, g_sub) >= target else ("gt", g_sub)
    fn, hi = _op_fn(op, base, np.random.default_rng(seed))
    sub, achieved, strength = _bisect(fn, g_sub, float(target), hi, iters)
    mask = np.zeros_like(g)
    mask[zs[0]:zs[-1] + 1] = sub
    return Degraded(mask, float(achieved), float(strength), base_name, op, float(target))


def _like(new: np.ndarray, old: Any) -> Any:
    """``new`` in the container type and dtype of ``old`` (torch tensor or numpy array)."""
    if isinstance(old, torch.Tensor):
        return torch.as_tensor(new).to(dtype=old.dtype, device=old.device)
    return np.asarray(new).astype(np.asarray(old).dtype, copy=False)


def degrade_case(case: Any, target: float, *, op: str, seed: int = 0) -> tuple[Any, Degraded]:
    """A copy of a ``CaseSlices`` whose predicted ``mask`` (and ``prob``) is degraded to ``target`` Dice.

    ``prob`` is replaced by the degraded mask (0/1) so soft-mask regions see the same degradation.

    Raises:
        InputError: the case has no ground-truth mask (``gt`` is None) or it is empty.
    """
    if getattr(case, "gt", None) is None:
        raise InputError(None, f"case '{case.case_id}': mask-quality curve needs a ground-truth mask, got none")
    d = degrade_to_dice(case.mask, case.gt, target, op=op, seed=seed)
    changes: dict[str, Any] = {"mask": _like(d.mask, case.mask)}
    if getattr(case, "prob", None) is not None:
        changes["prob"] = _like(d.mask.astype(np.float32), case.prob)
    return dataclasses.replace(case, **changes), d


def degrade_cases(cases: list[Any], target: float, *, op: str, seed: int = 0) -> tuple[list[Any], list[Degraded]]:
    """:func:`degrade_case` over cases (case i uses seed ``seed + i``); cases without/with empty gt raise."""
    out, info = [], []
    for i, case in enumerate(cases):
        c, d = degrade_case(case, target, op=op, seed=seed + i)
        out.append(c)
        info.append(d)
    return out, info


def mask_quality_curve(classifiers: dict[str, Any], cases: list[Any], targets: list[float], *,
                       ops: tuple[str, ...] = OPS, seed: int = 0) -> list[dict[str, Any]]:
    """AUC of each classifier on test cases whose predicted masks are degraded to each target Dice.

    Args:
        classifiers: ``{arm name: Classifier}`` (their region must use the predicted mask to matter).
        cases: labelled test ``CaseSlices`` with ground truth (cases without it must be filtered out).
        targets: target Dice levels; 1.0 (the ground truth) is evaluated once, as op ``gt``.
        ops: degradations to run.
        seed: seeds the shift directions (case i: ``seed + i``).

    Returns:
        One row per (arm, op, target): ``arm, op, target, dice_mean, dice_sd, n, n_base_gt, auc,
        auc_ci_low, auc_ci_high`` plus ``stage-1`` rows with the undegraded predicted masks.
    """
    from livercad.classify.infer import predict_cases
    from livercad.metrics.classification import auc_with_ci

    y = np.array([int(c.label) for c in cases])
    real = np.array([_dice(_as_bool(c.mask, "mask"), _as_bool(c.gt, "gt")) for c in cases])
    conditions: list[tuple[str, float]] = [("stage-1", float("nan"))]
    conditions += [("gt", 1.0)] if any(t >= 1.0 for t in targets) else []
    conditions += [(op, float(t)) for op in ops for t in targets if t < 1.0]
    rows: list[dict[str, Any]] = []
    for op, target in conditions:
        if op == "stage-1":
            deg, dices, n_gt = cases, real, 0
        else:
            deg, info = degrade_cases(cases, target, op=op if op != "gt" else "erode", seed=seed)
            dices, n_gt = np.array([d.dice for d in info]), sum(d.base == "gt" for d in info)
        for arm, clf in classifiers.items():
            r = auc_with_ci(y, predict_cases(clf, deg))
            rows.append({"arm": arm, "op": op, "target": target, "dice_mean": float(dices.mean()),
                         "dice_sd": float(dices.std()), "n": len(cases), "n_base_gt": int(n_gt),
                         "auc": r.auc, "auc_ci_low": r.ci_low, "auc_ci_high": r.ci_high})
        logger.debug("mask quality %s %.2f: mean Dice %.3f", op, target, float(dices.mean()))
    return rows


__all__ = ["OPS", "Degraded", "degrade_case", "degrade_cases", "degrade_to_dice", "mask_quality_curve"]

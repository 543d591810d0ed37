"""Shared helpers of the study tests: synthetic stage-1 masks and an independent DeLong reference."""

from __future__ import annotations

import numpy as np
from scipy import stats


def liver_discs(rng: np.random.Generator, s: int = 32, z: int = 6) -> np.ndarray:
    """A ``(z, s, s)`` uint8 "liver": a disc of radius 8 ± 1 on every slice but the first and last."""
    yy, xx = np.mgrid[:s, :s]
    gt = np.zeros((z, s, s), np.uint8)
    for k in range(1, z - 1):
        gt[k] = ((yy - 14) ** 2 + (xx - 13) ** 2) < (8 + int(rng.integers(-1, 2))) ** 2
    return gt


def delong_reference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong (1988) from its structural components, O(m n): (AUC_a - AUC_b, variance, two-sided p)."""
    pos, neg = y == 1, y == 0

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(1), psi.mean(0)

    (v10a, v01a), (v10b, v01b) = components(a), components(b)
    s10, s01 = np.cov(np.stack([v10a, v10b])), np.cov(np.stack([v01a, v01b]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    diff = float(v10a.mean() - v10b.mean())
    return diff, float(var), (1.0 if var <= 0 else float(2 * stats.norm.sf(abs(diff) / np.sqrt(var))))

"""Paired tests of two classifiers' probabilities on the same cases (an ablation arm and its reference, a
classifier and the CT attenuation rule).

:func:`compare`: exact McNemar and its χ² form on per-case correctness, Nowak's χ² on the two (right, wrong)
rows, and the AUC difference: DeLong for two classes, otherwise the paired patient bootstrap of the macro
one-vs-rest AUC difference (:func:`macro_auc_diff`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from livercad.errors import InputError

Z_95 = 1.959963984540054  # standard normal 97.5 % quantile


def macro_auc_diff(y: np.ndarray, pa: np.ndarray, pb: np.ndarray, groups: Sequence[str] | None = None,
                   n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Macro one-vs-rest AUC difference (a − b) with a paired patient-bootstrap CI and p-value (vectorised).

    Same resamples for both arms, equal to
    :func:`~livercad.metrics.stats.paired_bootstrap_diff` with scikit-learn's macro AUC (skipping replicates
    where it is undefined); CI and p-value by :func:`~livercad.metrics.stats.bootstrap_diff_summary`.

    Returns:
        ``diff``, ``ci_low``, ``ci_high`` (95 % percentile interval), ``pvalue``, ``n_valid``.
    """
    from livercad.metrics.stats import bootstrap_diff_summary, bootstrap_weights, weighted_auc

    k = pa.shape[1]
    w = np.vstack([np.ones(len(y)), bootstrap_weights(len(y), groups=groups, n_boot=n_boot, seed=seed)])
    d = (np.mean([weighted_auc(y == c, pa[:, c], w)[0] for c in range(k)], axis=0)
         - np.mean([weighted_auc(y == c, pb[:, c], w)[0] for c in range(k)], axis=0))
    return bootstrap_diff_summary(float(d[0]), d[1:])


def compare(y: np.ndarray, proba_arm: np.ndarray, proba_ref: np.ndarray, *, groups: Sequence[str] | None = None,
            n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Paired tests of one arm against the reference on the same test cases.

    Returns:
        ``mcnemar`` (exact), ``mcnemar_chi2``, ``chi2`` (Nowak), ``auc_diff`` with ``diff``, ``ci_low``,
        ``ci_high``, ``pvalue`` and ``method`` (``delong`` for 2 classes, else ``bootstrap``), ``note``.

    Example:
        >>> y = np.array([0, 0, 1, 1, 0, 1]); a = np.eye(2)[y] * 0.8 + 0.1; b = np.full((6, 2), 0.5)
        >>> compare(y, a, b, n_boot=100)["auc_diff"]["diff"]
        0.5
    """
    from livercad.metrics.stats import chi2_accuracy, delong_test, mcnemar_chi2, mcnemar_exact

    ca, cb = proba_arm.argmax(1) == y, proba_ref.argmax(1) == y
    out: dict[str, Any] = {"mcnemar": mcnemar_exact(ca, cb), "mcnemar_chi2": mcnemar_chi2(ca, cb),
                           "chi2": chi2_accuracy(ca, cb), "note": None}
    if proba_arm.shape[1] == 2:
        try:
            d = delong_test(y, proba_arm[:, 1], proba_ref[:, 1])
            half = Z_95 * np.sqrt(max(d["var"], 0.0))
            out["auc_diff"] = {"method": "delong", "diff": d["diff"], "ci_low": d["diff"] - half,
                               "ci_high": d["diff"] + half, "pvalue": d["pvalue"], "z": d["z"]}
        except InputError as exc:
            out["auc_diff"] = {"method": "delong", "diff": float("nan"), "ci_low": float("nan"),
                               "ci_high": float("nan"), "pvalue": float("nan")}
            out["note"] = f"DeLong skipped: {exc}"
    else:
        out["auc_diff"] = {"method": "bootstrap", **macro_auc_diff(y, proba_arm, proba_ref, groups, n_boot, seed)}
        out["note"] = "multi-class: DeLong skipped; macro-AUC difference by paired patient bootstrap"
    return out


__all__ = ["Z_95", "compare", "macro_auc_diff"]

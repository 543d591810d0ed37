"""Statistics of the segmentation-impact ablation, on per-case test predictions of every arm.

Orchestration (grid, training, saliency, report) lives in :mod:`livercad.pipeline.study.ablation`; this module
only turns predicted probabilities into numbers:

    * per seed: the scalar metrics of :func:`~livercad.metrics.classification.classification_metrics`, and
      their mean ± SD over seeds (:func:`mean_sd`, single-model variability);
    * **pooled = seed-averaged probabilities** (a seed ensemble: one prediction per case keeps the paired
      tests valid), with patient-bootstrap 95 % CIs (:func:`arm_statistics`);
    * vs the reference arm, on the pooled predictions (:func:`compare_to_reference`, each pair by
      :func:`livercad.metrics.paired.compare`): exact McNemar on per-case correctness, Nowak's χ² on the arm ×
      (right, wrong) table, DeLong for the AUC difference (binary; multi-class: paired patient bootstrap of
      the macro AUC difference), each family Holm-adjusted across comparisons.

A *run* (one trained seed of an arm) is a mapping with ``seed``, ``proba_test`` (``(n_test, K)``),
``proba_val`` (``(n_val, K)`` or None), ``val_best`` (``accuracy``/``roc_auc`` of the best epoch, may be
None), ``weights``, ``seconds`` and ``best_epoch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from livercad.metrics.paired import compare

SCALARS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "roc_auc", "brier")
"""The metrics reported per seed and as mean ± SD over seeds."""


def scalar_metrics(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The :data:`SCALARS` of :func:`~livercad.metrics.classification.classification_metrics`.

    Example:
        >>> y = np.array([0, 1, 1, 0]); p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
        >>> scalar_metrics(y, p, ["normal", "cirrhosis"])["accuracy"]
        0.75
    """
    from livercad.metrics.classification import classification_metrics

    m = classification_metrics(y, proba, class_names=list(classes))
    return {k: m[k] for k in SCALARS}


def mean_sd(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample SD (``ddof=1``) over seeds of every :data:`SCALARS` metric, ignoring NaN seeds.

    The mean is NaN when no seed has a finite value, the SD when fewer than two have.

    Example:
        >>> mean_sd([{k: 0.5 for k in SCALARS}, {k: 0.7 for k in SCALARS}])["roc_auc"]["mean"]
        0.6
    """
    out = {}
    for k in SCALARS:
        v = np.array([m[k] for m in per_seed], dtype=float)
        out[k] = {"mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                  "sd": float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")}
    return out


def arm_statistics(runs: Sequence[Mapping[str, Any]], y: np.ndarray, classes: Sequence[str], groups: Sequence[str],
                   *, dice: np.ndarray | None = None, y_val: np.ndarray | None = None, n_boot: int = 1000,
                   seed: int = 0) -> dict[str, Any]:
    """Statistics of one arm on the test split from its seed runs (see the module docstring for a run).

    Args:
        runs: One mapping per trained seed, in seed order.
        y: True test labels (class indices), shape ``(n_test,)``.
        classes: Class names (index order).
        groups: Patient id of every test case (bootstrap resampling unit).
        dice: Stage-1 Dice of every test case (NaN = unknown): adds ``dice_strata`` (split at the median).
        y_val: True validation labels: adds ``val`` (the val → test gap of the shortcut study).
        n_boot: Bootstrap replicates of the CIs.
        seed: Bootstrap seed.

    Returns:
        ``seeds``, ``per_seed`` (metrics per seed), ``mean_sd``, ``pooled`` (classification report with CIs of
        the seed-averaged probabilities), ``proba_test`` (pooled), ``proba_test_seeds``, ``weights``,
        ``train_seconds``, ``best_epoch``; binary: ``auc_delong_ci`` (and ``note`` when DeLong fails);
        optionally ``val`` and ``dice_strata``.
    """
    from livercad.metrics.classification import classification_report

    classes = list(classes)
    pooled = np.mean([r["proba_test"] for r in runs], axis=0)
    per_seed = [{"seed": r["seed"], **scalar_metrics(y, r["proba_test"], classes)} for r in runs]
    rep = classification_report(y, pooled, class_names=classes, groups=list(groups), n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"seeds": [r["seed"] for r in runs], "per_seed": per_seed, "mean_sd": mean_sd(per_seed),
                           "pooled": rep, "proba_test": pooled, "proba_test_seeds": [r["proba_test"] for r in runs],
                           "weights": [r["weights"] for r in runs], "train_seconds": [r["seconds"] for r in runs],
                           "best_epoch": [r["best_epoch"] for r in runs]}
    if len(classes) == 2:
        out.update(_auc_ci(y, pooled))
    if y_val is not None:
        out["val"] = _val_metrics(runs, y_val, classes)
    if dice is not None:
        strata = _dice_strata(y, pooled, np.asarray(dice, dtype=float), classes, groups, n_boot, seed)
        if strata is not None:
            out["dice_strata"] = strata
    return out


def _auc_ci(y: np.ndarray, pooled: np.ndarray) -> dict[str, Any]:
    from livercad.metrics.classification import auc_with_ci

    r = auc_with_ci(y, pooled)
    return {"auc_delong_ci": [r.ci_low, r.ci_high], **({"note": r.note} if r.note is not None else {})}


def _val_metrics(runs: Sequence[Mapping[str, Any]], y_val: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Validation metrics: of the seed-averaged val predictions when every run has them, else the best epochs'."""
    if runs[0]["proba_val"] is not None:  # seed-averaged, like the test verdicts
        return {**scalar_metrics(y_val, np.mean([r["proba_val"] for r in runs], axis=0), classes), "source": "pooled"}
    # the training's own best-epoch validation (mean over seeds; selection-biased)
    return {k: float(np.mean([r["val_best"][k] if r["val_best"][k] is not None else np.nan for r in runs]))
            for k in ("accuracy", "roc_auc")} | {"source": "best-epoch"}


def _dice_strata(y: np.ndarray, pooled: np.ndarray, dice: np.ndarray, classes: list[str], groups: Sequence[str],
                 n_boot: int, seed: int) -> dict[str, Any] | None:
    from livercad.metrics.classification import stratify_by_dice

    ok = np.isfinite(dice)
    if ok.sum() < 2:
        return None
    return stratify_by_dice(y[ok], pooled[ok], dice[ok], threshold=float(np.median(dice[ok])), class_names=classes,
                            groups=[g for g, o in zip(groups, ok, strict=True) if o], n_boot=n_boot, seed=seed)


def compare_to_reference(arms: Sequence[Mapping[str, Any]], reference: str, y: np.ndarray,
                         groups: Sequence[str] | None = None, *, n_boot: int = 1000,
                         seed: int = 0) -> list[dict[str, Any]]:
    """:func:`compare` every arm with the ``reference``-region arm of the same strategy and backbone; Holm.

    Args:
        arms: Per-arm statistics with ``name``, ``region``, ``strategy``, ``backbone`` and pooled ``proba_test``.
        reference: The reference region (``ablation.reference``); every (strategy, backbone) needs its arm.
        y: True test labels.
        groups: Patient id of every test case.
        n_boot: Bootstrap replicates (multi-class AUC difference).
        seed: Bootstrap seed.

    Returns:
        One dict per non-reference arm, in ``arms`` order (an arm of strategy ``rule`` against the first
        reference arm): ``arm``, ``reference`` and :func:`compare`'s keys;
        ``mcnemar``, ``chi2`` and ``auc_diff`` gain ``pvalue_holm`` (Holm across the comparisons, per family).
    """
    from livercad.metrics.stats import holm

    ref_of = {(a["strategy"], a["backbone"]): a for a in arms if a["region"] == reference}
    first = next(iter(ref_of.values()))  # arms of no trained strategy (the attenuation rule) compare with it
    comps = []
    for a in arms:
        ref = ref_of.get((a["strategy"], a["backbone"]), first if a["strategy"] == "rule" else None)
        if ref is None:
            raise KeyError(f"no {reference} arm for strategy {a['strategy']} and backbone {a['backbone']}")
        if a is ref:
            continue
        c = compare(y, a["proba_test"], ref["proba_test"], groups=groups, n_boot=n_boot, seed=seed)
        comps.append({"arm": a["name"], "reference": ref["name"], **c})
    for fam in ("mcnemar", "chi2", "auc_diff"):
        for c, p in zip(comps, holm([c[fam]["pvalue"] for c in comps]), strict=True):
            c[fam]["pvalue_holm"] = p
    return comps


__all__ = ["SCALARS", "arm_statistics", "compare_to_reference", "mean_sd",
           "scalar_metrics"]

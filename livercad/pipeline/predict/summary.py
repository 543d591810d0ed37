"""Cohort metrics of a prediction run (metrics.json), computed from the per-case records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from livercad.types import CaseResult

SEG_KEYS = ("dice", "iou", "hd95_mm", "msd_mm", "volume_error_ml", "volume_error_rel")


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def segmentation_summary(results: Sequence[CaseResult], *, seed: int = 0) -> dict[str, Any]:
    """Mean/median/SD and bootstrap 95 % CI of every segmentation metric over cases with a reference."""
    from livercad.metrics.segmentation import summarize

    with_ref = [r for r in results if r.ok and r.segmentation_metrics]
    out: dict[str, Any] = {}
    for key in SEG_KEYS:
        vals = [r.segmentation_metrics.get(key) for r in with_ref]
        if _finite(vals):
            out[key] = summarize([np.nan if v is None else float(v) for v in vals], seed=seed)
    return out


def labelled_arrays(results: Sequence[CaseResult], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray,
                                                                                    list[str], list[CaseResult]]:
    """(y_true, proba, patient groups, records) for successful cases whose true label is a model class."""
    keep = [r for r in results if r.ok and r.true_label in classes]
    y = np.array([list(classes).index(r.true_label) for r in keep], dtype=int)
    proba = np.array([[r.probabilities[c] for c in classes] for r in keep], dtype=float).reshape(
        len(keep), len(classes))
    groups = [r.patient_id or r.case_id for r in keep]
    return y, proba, groups, keep


def _describe(values: Sequence[float]) -> dict[str, float]:
    """Mean, median, SD (0 for one value) and count of finite values."""
    return {"mean": float(np.mean(values)), "median": float(np.median(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "n": len(values)}


def cohort_metrics(results: Sequence[CaseResult], classes: Sequence[str], *, n_boot: int = 1000,
                   seed: int = 0, attenuation_force: bool = False) -> dict[str, Any]:
    """Everything for metrics.json: counts, liver sizes, segmentation summary, classification report with CIs.

    ``attenuation_force``: the attenuation rule also scores contrast-enhanced CT
    (:func:`~livercad.pipeline.predict.attenuation_eval.attenuation_metrics`).

    Liver volumes and areas are summarised over the cases that report them (a case of unknown spacing
    reports neither; ``n_spacing_unknown`` counts them).
    """
    ok = [r for r in results if r.ok]
    out: dict[str, Any] = {"n_cases": len(results), "n_ok": len(ok), "n_failed": len(results) - len(ok)}
    for key in ("liver_volume_ml", "liver_area_cm2", "spleen_volume_ml", "liver_minus_spleen"):
        values = _finite([getattr(r, key) for r in ok])
        if values:
            out[key] = _describe(values)
    for unit in ("HU", "au"):  # liver intensity (eroded mask) per unit: HU for CT
        values = _finite([r.liver_mean for r in ok if r.intensity_unit == unit])
        if values:
            out[f"liver_mean_{unit.lower()}"] = _describe(values)
    unknown = sum(r.spacing_known is False for r in ok)
    if unknown:
        out["n_spacing_unknown"] = unknown
    seg = segmentation_summary(results, seed=seed)
    if seg:
        out["segmentation"] = seg
    y, proba, groups, keep = labelled_arrays(results, classes)
    if len(keep) >= 2 and len(set(y.tolist())) >= 1:
        from livercad.metrics.classification import classification_report

        out["classification"] = classification_report(y, proba, class_names=list(classes), groups=groups,
                                                      n_boot=n_boot, seed=seed)
        out["classification"]["n_labelled"] = len(keep)
        dice = [r.dice for r in keep]
        if all(d is not None for d in dice) and len(keep) >= 4:
            from livercad.metrics.classification import stratify_by_dice

            out["classification_by_mask_quality"] = stratify_by_dice(
                y, proba, np.array(dice, dtype=float), class_names=list(classes))
    from livercad.pipeline.predict.attenuation_eval import attenuation_metrics

    rule = attenuation_metrics(results, classes, force=attenuation_force, n_boot=n_boot, seed=seed)
    if rule is not None:
        out["attenuation"] = rule
    return out


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers ``livercad evaluate`` prints: counts, mean Dice, accuracy/AUC with their 95 % CIs.

    Example:
        >>> headline({"n_ok": 2, "n_failed": 0, "segmentation": {"dice": {"mean": 0.9}}})
        {'n_ok': 2, 'n_failed': 0, 'dice_mean': 0.9}
    """
    out: dict[str, Any] = {"n_ok": metrics.get("n_ok"), "n_failed": metrics.get("n_failed")}
    seg = metrics.get("segmentation", {})
    if "dice" in seg:
        out["dice_mean"] = seg["dice"].get("mean")
    for k in ("accuracy", "roc_auc", "balanced_accuracy"):
        v = metrics.get("classification", {}).get(k)
        if isinstance(v, dict):
            out[k] = [v.get("value"), v.get("ci_low"), v.get("ci_high")]
    return out

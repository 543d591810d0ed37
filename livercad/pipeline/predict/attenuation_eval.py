"""The CT attenuation rule as a classifier beside the deep one, on a labelled prediction run (``evaluate``).

For the labelled CT cases of a run (true label ``steatosis`` = positive, any other label negative), the
literature's rules (:mod:`livercad.classify.attenuation`: liver ≤ 40 HU, and liver − spleen < −10 HU where
another tool's spleen mask is there) are scored with the same patient-bootstrap CIs as the classifier, and,
when the bundle's classifier decides steatosis too, compared with it on the same cases by the ablation's
paired tests (:func:`livercad.metrics.paired.compare`: exact McNemar, χ², DeLong). Contrast-enhanced cases are
left out (counted) unless forced; cases of unknown phase are kept and counted. The threshold is the
literature's here: fitting one (Youden) needs training cases, which the ablation has
(:mod:`livercad.pipeline.study.baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from livercad.types import CaseResult

POSITIVE = "steatosis"


def _phase_ok(phase: str | None, force: bool) -> str | None:
    """The phase status (``unenhanced`` | ``unknown`` | ``forced``), or ``None`` for a refused enhanced case."""
    from livercad.classify.attenuation import check_phase
    from livercad.errors import ConfigError

    try:
        return check_phase(phase, force=force)
    except ConfigError:
        return None


def attenuation_metrics(results: Sequence[CaseResult], classes: Sequence[str], *, force: bool = False,
                        n_boot: int = 1000, seed: int = 0) -> dict[str, Any] | None:
    """metrics.json's ``attenuation``: each rule's classification report (with CIs) and the paired tests.

    ``None`` when no labelled CT case has a liver attenuation or no case is labelled ``steatosis``.
    """
    from livercad.classify.attenuation import literature_rule
    from livercad.metrics.classification import classification_report
    from livercad.metrics.paired import compare

    ct = [r for r in results if r.ok and r.modality == "ct" and r.true_label and r.liver_mean is not None]
    status = [_phase_ok(r.contrast_phase, force) for r in ct]
    cases = [r for r, s in zip(ct, status, strict=True) if s is not None]
    y = np.array([int(r.true_label == POSITIVE) for r in cases])
    if len(cases) < 2 or not y.any():
        return None
    groups = [r.patient_id or r.case_id for r in cases]
    out: dict[str, Any] = {"n": len(cases), "n_refused_enhanced": status.count(None),
                           "n_phase_unknown": status.count("unknown"), "rules": {}}
    features = {"liver_hu": [r.liver_mean for r in cases]}
    if all(r.liver_minus_spleen is not None for r in cases):
        features["liver_minus_spleen_hu"] = [r.liver_minus_spleen for r in cases]
    deep = _deep_proba(cases, classes)
    for feature, values in features.items():
        rule = literature_rule(feature)
        p = rule.probability(values)
        proba = np.stack([1.0 - p, p], axis=1)
        entry = {"threshold_hu": rule.threshold, "source": rule.source,
                 "report": classification_report(y, proba, class_names=["other", POSITIVE], groups=groups,
                                                  n_boot=n_boot, seed=seed)}
        if deep is not None:  # the classifier against the rule: diff = AUC(classifier) - AUC(rule)
            entry["vs_classifier"] = compare(y, deep, proba, groups=groups, n_boot=n_boot, seed=seed)
        out["rules"][f"{feature} < {rule.threshold:g}"] = entry
    return out


def _deep_proba(cases: Sequence[CaseResult], classes: Sequence[str]) -> np.ndarray | None:
    """The classifier's (other, steatosis) probabilities of ``cases`` when it decides steatosis, else ``None``."""
    if POSITIVE not in classes or not all(r.probabilities for r in cases):
        return None
    p = np.array([r.probabilities[POSITIVE] for r in cases], dtype=float)
    return np.stack([1.0 - p, p], axis=1)


__all__ = ["attenuation_metrics"]

"""The CT attenuation rule for steatosis: the physical baseline a deep classifier has to beat.

Fat lowers the liver's attenuation on **unenhanced** CT. The literature's cut-offs (Pickhardt et al. 2012,
Eur Radiol): a liver at or below 40 HU means moderate-to-severe steatosis; below 48 HU is 100 % specific for
at least 30 % fat; a liver − spleen difference below −10 HU points the same way. On contrast-enhanced
(portal-venous) CT the rule is unreliable (−10 HU: 92 % sensitivity, 53 % specificity), so it is refused
there unless forced.

The rule here calls a case steatotic when its feature (the mean liver HU inside the liver eroded by two
voxels, or liver − spleen) lies *below* a threshold: fitted by Youden's J on training cases, or the
literature's. Its score for ranking metrics (ROC AUC, DeLong) is the negated feature; its probability is a
logistic of the distance to the threshold (a monotone stand-in, 10 HU per logit), so it plugs into the same
tables, CIs and paired tests as the deep arms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from livercad.errors import ConfigError

#: Liver attenuation (HU, unenhanced CT) at or below which steatosis is moderate to severe (Pickhardt 2012).
LITERATURE_LIVER_HU = 40.0
#: Liver − spleen attenuation difference (HU) below which the liver is steatotic (unenhanced CT).
LITERATURE_LIVER_MINUS_SPLEEN_HU = -10.0
#: Contrast-phase names that mean an unenhanced scan (the DICOM reader's and the manifest's spellings).
UNENHANCED = frozenset({"non-contrast", "noncontrast", "unenhanced", "native", "plain", "none"})
FEATURES = ("liver_hu", "liver_minus_spleen_hu")
_HU_PER_LOGIT = 10.0


@dataclass(frozen=True)
class AttenuationRule:
    """Steatosis when ``feature < threshold``.

    Attributes:
        feature: ``liver_hu`` or ``liver_minus_spleen_hu``.
        threshold: in HU.
        source: ``youden`` (fitted on training cases) or ``literature``.
        n_fit: training cases the threshold was fitted on (0 for the literature's).
    """

    feature: str
    threshold: float
    source: str
    n_fit: int = 0

    def predict(self, values: Sequence[float]) -> np.ndarray:
        """1 (steatosis) where a value lies below the threshold, else 0; NaN values give 0."""
        v = np.asarray(values, dtype=float)
        return (np.nan_to_num(v, nan=np.inf) < self.threshold).astype(int)

    def probability(self, values: Sequence[float]) -> np.ndarray:
        """A steatosis probability, logistic in ``(threshold − value) / 10 HU`` (0.5 at the threshold)."""
        v = np.asarray(values, dtype=float)
        return 1.0 / (1.0 + np.exp(-(self.threshold - v) / _HU_PER_LOGIT))


def literature_rule(feature: str = "liver_hu") -> AttenuationRule:
    """The published cut-off: 40 HU for the liver, −10 HU for liver − spleen."""
    _check_feature(feature)
    t = LITERATURE_LIVER_HU if feature == "liver_hu" else LITERATURE_LIVER_MINUS_SPLEEN_HU
    return AttenuationRule(feature, t, "literature")


def fit_rule(values: Sequence[float], steatosis: Sequence[int], feature: str = "liver_hu") -> AttenuationRule:
    """The threshold maximising Youden's J (sensitivity + specificity − 1) on training cases.

    The cut lies midway between the two feature values it separates. Cases whose value is NaN (no liver
    left after erosion, no spleen) are left out.

    Raises:
        ConfigError: when fewer than two valid cases remain or they hold one class only.

    Example:
        >>> fit_rule([60, 55, 35, 30], [0, 0, 1, 1]).threshold
        45.0
    """
    from sklearn.metrics import roc_curve

    _check_feature(feature)
    v, y = np.asarray(values, dtype=float), np.asarray(steatosis, dtype=int)
    ok = np.isfinite(v)
    v, y = v[ok], y[ok]
    if v.size < 2 or np.unique(y).size < 2:
        raise ConfigError(f"attenuation rule: {v.size} usable training cases of {np.unique(y).size} class(es); "
                          "fitting the threshold needs both classes")
    fpr, tpr, thr = roc_curve(y, -v, drop_intermediate=False)  # score = -HU: lower attenuation, more fat
    i = int(np.argmax(tpr - fpr))
    upper = float(thr[i]) if np.isfinite(thr[i]) else float(thr[i + 1])
    lower = float(thr[i + 1]) if i + 1 < len(thr) else upper
    return AttenuationRule(feature, -(upper + lower) / 2.0, "youden", int(v.size))


def check_phase(phase: str | None, *, force: bool = False) -> str:
    """The phase status of a CT for the rule: ``unenhanced``, ``unknown``, or ``forced`` (enhanced, forced).

    Raises:
        ConfigError: one line, when the phase is a contrast-enhanced one and ``force`` is not set.
    """
    if phase is None or str(phase).strip().lower() in {"", "unknown"}:
        return "unknown"
    if str(phase).strip().lower() in UNENHANCED:
        return "unenhanced"
    if force:
        return "forced"
    raise ConfigError(f"attenuation rule refused on {phase} CT: contrast shifts liver and spleen HU (the "
                      "rule holds on unenhanced CT); force it to compute it anyway")


def _check_feature(feature: str) -> None:
    if feature not in FEATURES:
        raise ConfigError(f"attenuation feature {feature!r} is not one of {', '.join(FEATURES)}")


__all__ = ["AttenuationRule", "FEATURES", "LITERATURE_LIVER_HU", "LITERATURE_LIVER_MINUS_SPLEEN_HU", "UNENHANCED",
           "check_phase", "fit_rule", "literature_rule"]

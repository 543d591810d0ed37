"""Classification metrics with patient-level bootstrap confidence intervals.

Point values are scikit-learn's on the same predictions (label = argmax of the probabilities).
Binary: ``positive`` (default 1) defines sensitivity, precision, F1; specificity = recall of the other
class. Multi-class: macro averages, specificity macro one-vs-rest TN/(TN+FP); classes where a ratio is
0/0 are left out of the average (scikit-learn's ``zero_division=np.nan``). ROC AUC is binary on
``proba[:, positive]`` or macro one-vs-rest, and ``nan`` when a class is absent. Brier: binary
``brier_score_loss`` ([0, 1]); multi-class the mean summed squared one-hot error ([0, 2]).

:func:`classification_report` resamples whole patients (``groups``) and computes every scalar metric for
all replicates in one vectorised pass (confusion counts by a matrix product, AUC by a weighted
Mann-Whitney sum); replicates where a metric is undefined are skipped for that metric.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics as skm

from livercad.errors import InputError
from livercad.metrics.replicates import replicate_metrics
from livercad.metrics.stats import bootstrap_replicates, bootstrap_weights, delong_ci, percentile_ci

logger = logging.getLogger(__name__)


def _validate(
    y_true: Sequence[int], proba: np.ndarray, class_names: Sequence[str], positive: int | None
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Checked int labels, row-normalised float probabilities and the positive index (None if K > 2)."""
    p, y, k = np.asarray(proba, dtype=float), np.asarray(y_true), len(class_names)
    if p.ndim != 2 or p.shape[1] != k or k < 2 or p.shape[0] == 0:
        raise InputError(None, f"proba: expected shape (n>0, {k}) for classes {list(class_names)}, got {p.shape}")
    ok = y.shape == (p.shape[0],) and y.dtype.kind in "iubf" and np.array_equal(y, np.round(y))
    if not ok or y.min() < 0 or y.max() >= k:
        raise InputError(None, f"y_true: expected {p.shape[0]} labels in 0..{k - 1}, got {y.shape} {y.dtype}")
    sums = p.sum(axis=1)
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(sums, 1.0, atol=1e-3):
        raise InputError(None, "proba: expected finite probabilities with rows summing to 1 (apply softmax)")
    if k == 2:
        positive = 1 if positive is None else positive
        if positive not in (0, 1):
            raise InputError(None, f"positive: expected class index 0 or 1, got {positive!r}")
    elif positive is not None:
        raise InputError(None, f"positive: only meaningful for 2 classes, got {positive!r} with {k} classes")
    return y.astype(np.int64), p / sums[:, None], positive


@dataclass(frozen=True)
class AucCI:
    """A ROC AUC with its DeLong confidence interval (``nan`` bounds where there is none, ``note`` says why)."""

    auc: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    note: str | None = None


def auc_with_ci(y_true: Sequence[int], proba: np.ndarray, *, positive: int | None = 1, ci: bool = True,
                level: float = 0.95) -> AucCI:
    """ROC AUC of class probabilities, with a DeLong CI for two classes: the one AUC of livercad.

    Binary: ``roc_auc_score(y == positive, proba[:, positive])`` and, with ``ci``, the DeLong interval
    (:func:`livercad.metrics.stats.delong_ci`; ``nan`` bounds and the reason in ``note`` when it is undefined,
    e.g. fewer than two cases of a class). More classes: the macro one-vs-rest AUC, no CI. The AUC is ``nan``
    when a class has no case.

    Example:
        >>> p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
        >>> r = auc_with_ci([0, 0, 1, 1, 0, 1], np.c_[1 - p1, p1])
        >>> round(r.auc, 3), 0 <= r.ci_low <= r.auc <= r.ci_high <= 1
        (0.889, True)
    """
    y, p = np.asarray(y_true), np.asarray(proba)
    k = p.shape[1]
    pos = 1 if positive is None else positive
    if np.unique(y).size < k:
        auc = float("nan")
    elif k > 2:
        auc = float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(k))))
    else:
        auc = float(skm.roc_auc_score(y == pos, p[:, pos]))
    if not ci or k != 2:
        return AucCI(auc)
    try:
        low, high = delong_ci((y == pos).astype(np.int64), p[:, pos], level)
    except InputError as exc:
        return AucCI(auc, note=str(exc))
    return AucCI(auc, low, high)


def _auc_and_threshold(y: np.ndarray, p: np.ndarray, pos: int | None) -> tuple[float, float]:
    auc = auc_with_ci(y, p, positive=pos, ci=False).auc
    if pos is None or np.isnan(auc):
        return auc, float("nan")
    fpr, tpr, thr = skm.roc_curve(y == pos, p[:, pos])
    return auc, float(thr[np.argmax(tpr - fpr)])


def _specificities(cm: np.ndarray) -> np.ndarray:
    """One-vs-rest TN/(TN+FP) per class from a confusion matrix (nan where undefined)."""
    tp, support, predicted, total = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0), cm.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (total - support - predicted + tp) / (total - support)


def classification_metrics(y_true: Sequence[int], proba: np.ndarray, *, class_names: Sequence[str],
                           positive: int | None = None, top_k: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """Point metrics of class-probability predictions, equal to scikit-learn's.

    Args:
        y_true: True class index per case (0..K-1).
        proba: ``(n, K)`` class probabilities (rows sum to 1); prediction is the argmax.
        class_names: The K class names, in column order.
        positive: Positive class index for binary tasks (default 1); must be None for K > 2.
        top_k: k values for top-k accuracy; only k < K are reported (key ``top{k}_accuracy``).

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``,
        ``youden_j``, ``youden_threshold``, ``roc_auc``, ``top{k}_accuracy``, ``brier`` (floats),
        ``confusion_matrix`` (rows true, columns predicted), ``per_class_recall`` (name -> float), ``n``.

    Example:
        >>> m = classification_metrics([0, 1, 1, 0], np.array([[.8, .2], [.3, .7], [.6, .4], [.9, .1]]),
        ...                            class_names=["normal", "cirrhosis"])
        >>> m["accuracy"], m["sensitivity"], m["specificity"], m["roc_auc"]
        (0.75, 0.5, 1.0, 1.0)
    """
    y, p, pos = _validate(y_true, proba, class_names, positive)
    k, labels, pred = p.shape[1], list(range(p.shape[1])), p.argmax(axis=1)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    scorers = (skm.recall_score, skm.precision_score, skm.f1_score)
    per = {f.__name__[:-6]: f(y, pred, labels=labels, average=None, zero_division=np.nan) for f in scorers}
    spec = _specificities(cm)
    if pos is not None:
        sens, sp, prec, f1 = per["recall"][pos], per["recall"][1 - pos], per["precision"][pos], per["f1"][pos]
        brier = skm.brier_score_loss(y == pos, p[:, pos])
    else:
        kw = {"labels": labels, "average": "macro", "zero_division": np.nan}
        sens, prec, f1 = (f(y, pred, **kw) for f in scorers)
        sp = np.nan if np.isnan(spec).all() else np.nanmean(spec)
        brier = skm.brier_score_loss(y, p, labels=labels)
    auc, thr = _auc_and_threshold(y, p, pos)
    out: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "sensitivity": float(sens),
        "specificity": float(sp),
        "precision": float(prec),
        "f1": float(f1),
        "youden_j": float(sens + sp - 1),
        "youden_threshold": thr,
        "roc_auc": auc,
    }
    for kk in _ks(top_k, k):
        score = p[:, 1] if k == 2 else p
        out[f"top{kk}_accuracy"] = float(skm.top_k_accuracy_score(y, score, k=kk, labels=labels))
    out["brier"] = float(brier)
    out["confusion_matrix"] = cm.tolist()
    out["per_class_recall"] = {str(c): float(r) for c, r in zip(class_names, per["recall"], strict=True)}
    out["n"] = int(y.size)
    return out


def _ks(top_k: Sequence[int], k: int) -> list[int]:
    if any(int(t) != t or t < 1 for t in top_k):
        raise InputError(None, f"top_k: expected positive integers, got {list(top_k)}")
    return [int(t) for t in top_k if t < k]


def bootstrap_ci(
    y_true: Sequence[int],
    proba: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    *,
    groups: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric_fn(y_true, proba)``, resampling patients if ``groups`` is set.

    Replicates where the metric is ``nan`` (e.g. a class missing) are skipped; ``metric_fn`` should
    return ``nan`` rather than raise for them.

    Example:
        >>> y, p = [0, 1] * 10, np.tile([[.7, .3], [.4, .6]], (10, 1))
        >>> acc = lambda y, p: float(np.mean(p.argmax(1) == y))
        >>> bootstrap_ci(y, p, acc, n_boot=50)
        (1.0, 1.0)
    """
    y, p = np.asarray(y_true), np.asarray(proba)
    if len(y) != len(p):
        raise InputError(None, f"y_true and proba: expected equal lengths, got {len(y)} and {len(p)}")
    reps = bootstrap_replicates(len(y), lambda i: metric_fn(y[i], p[i]), groups=groups, n_boot=n_boot, seed=seed)
    return percentile_ci(reps, ci)


def classification_report(
    y_true: Sequence[int],
    proba: np.ndarray,
    *,
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
    positive: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    top_k: Sequence[int] = (1, 2),
) -> dict[str, Any]:
    """Every scalar metric of :func:`classification_metrics` with a (patient) bootstrap CI.

    All metrics are computed for all replicates in one vectorised pass over the same resamples.

    Returns:
        ``{metric: {"value", "ci_low", "ci_high", "n_boot_valid"}}`` for each scalar metric,
        ``per_class_recall`` as ``{class_name: {...same...}}``, plus ``confusion_matrix`` and ``n``.

    Example:
        >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 40)
        >>> p = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.2, 40), 0, 1)
        >>> r = classification_report(y, np.c_[1 - p, p], class_names=["a", "b"], n_boot=200)
        >>> r["roc_auc"]["ci_low"] <= r["roc_auc"]["value"] <= r["roc_auc"]["ci_high"]
        True
    """
    point = classification_metrics(y_true, proba, class_names=class_names, positive=positive, top_k=top_k)
    y, p, pos = _validate(y_true, proba, class_names, positive)
    w = bootstrap_weights(y.size, groups=groups, n_boot=n_boot, seed=seed).astype(float)
    reps = replicate_metrics(y, p, pos, _ks(top_k, p.shape[1]), w)

    def entry(value: float, r: np.ndarray) -> dict[str, float]:
        low, high = percentile_ci(r, ci)
        return {"value": value, "ci_low": low, "ci_high": high, "n_boot_valid": int(np.sum(~np.isnan(r)))}

    out: dict[str, Any] = {name: entry(point[name], r) for name, r in reps.items() if "/" not in name}
    out["per_class_recall"] = {
        str(c): entry(point["per_class_recall"][str(c)], reps[f"recall/{i}"]) for i, c in enumerate(class_names)
    }
    out["confusion_matrix"], out["n"] = point["confusion_matrix"], point["n"]
    skipped = {m: n_boot - e["n_boot_valid"] for m, e in out.items() if isinstance(e, dict) and "n_boot_valid" in e}
    if any(skipped.values()):
        logger.debug("bootstrap replicates skipped (metric undefined): %s", skipped)
    return out


def stratify_by_dice(
    y_true: Sequence[int],
    proba: np.ndarray,
    dice: Sequence[float],
    *,
    threshold: float = 0.9,
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
    positive: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Classification reports for cases with good (Dice >= threshold) vs poor stage-1 masks.

    Cases with a ``nan`` Dice (no reference mask) are left out and counted in ``n_nan_dice``.

    Returns:
        ``{"threshold", "n_good", "n_poor", "n_nan_dice", "good", "poor"}`` where ``good``/``poor``
        are :func:`classification_report` dicts (``None`` for an empty stratum).
    """
    y, p, d = np.asarray(y_true), np.asarray(proba), np.asarray(dice, dtype=float)
    if not len(y) == len(p) == len(d):
        raise InputError(None, f"expected equal lengths, got y_true {len(y)}, proba {len(p)}, dice {len(d)}")
    g = None if groups is None else np.asarray(groups)
    out: dict[str, Any] = {"threshold": float(threshold), "n_nan_dice": int(np.isnan(d).sum())}
    kw = {"class_names": class_names, "positive": positive, "n_boot": n_boot, "seed": seed}
    for name, sel in (("good", d >= threshold), ("poor", d < threshold)):
        out[f"n_{name}"] = int(sel.sum())
        sub = None if g is None else g[sel]
        out[name] = classification_report(y[sel], p[sel], groups=sub, **kw) if sel.any() else None
    return out

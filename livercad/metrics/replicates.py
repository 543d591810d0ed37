"""Every scalar classification metric for many bootstrap replicates at once (vectorised over case weights).

:func:`replicate_metrics` is the engine of :func:`livercad.metrics.classification.classification_report`:
confusion counts by a matrix product of case weights, AUC by a weighted Mann-Whitney sum
(:func:`livercad.metrics.stats.weighted_auc`). Each replicate equals scikit-learn on the data where case i is
repeated ``w[r, i]`` times.
"""

from __future__ import annotations

import numpy as np

from livercad.metrics.stats import weighted_auc


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, a, 0.0).sum(axis=1) / ok.sum(axis=1)


def replicate_metrics(
    y: np.ndarray, p: np.ndarray, pos: int | None, ks: list[int], w: np.ndarray
) -> dict[str, np.ndarray]:
    """Every scalar metric for each row of case weights ``w`` (R, n), vectorised over rows.

    Args:
        y: true class indices ``(n,)``; p: probabilities ``(n, K)``; pos: positive class index (binary) or None.
        ks: the k values of top-k accuracy; w: case weights ``(R, n)`` (bootstrap counts).

    Returns:
        metric name -> ``(R,)`` values (``recall/<class index>`` per class too); nan where undefined.
    """
    n, k = p.shape
    pred = p.argmax(axis=1)
    cells = np.zeros((n, k * k))
    cells[np.arange(n), y * k + pred] = 1.0
    cm = (w @ cells).reshape(-1, k, k)
    tp, support, predicted = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
    total = support.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec, prec, f1 = tp / support, tp / predicted, 2 * tp / (support + predicted)
        spec = (total[:, None] - support - predicted + tp) / (total[:, None] - support)
    if pos is not None:
        sens, sp, pr, f = rec[:, pos], rec[:, 1 - pos], prec[:, pos], f1[:, pos]
        auc, thr = weighted_auc(y == pos, p[:, pos], w)
        brier_case = (p[:, pos] - (y == pos)) ** 2
    else:
        sens, sp, pr, f = (_nanmean_rows(a) for a in (rec, spec, prec, f1))
        auc = np.mean([weighted_auc(y == c, p[:, c], w)[0] for c in range(k)], axis=0)
        thr = np.full(w.shape[0], np.nan)
        brier_case = ((p - np.eye(k)[y]) ** 2).sum(axis=1)
    out = {
        "accuracy": tp.sum(axis=1) / total,
        "balanced_accuracy": _nanmean_rows(rec),
        "sensitivity": sens,
        "specificity": sp,
        "precision": pr,
        "f1": f,
        "youden_j": sens + sp - 1,
        "youden_threshold": thr,
        "roc_auc": auc,
    }
    ranked = np.argsort(p, axis=1, kind="mergesort")[:, ::-1]  # scikit-learn's top-k tie order
    for kk in ks:
        hits = (p[:, 1] > 0.5) == (y == 1) if k == 2 else (ranked[:, :kk] == y[:, None]).any(axis=1)
        out[f"top{kk}_accuracy"] = w @ hits.astype(float) / total
    out["brier"] = w @ brier_case / total
    out |= {f"recall/{c}": rec[:, c] for c in range(k)}
    return out


__all__ = ["replicate_metrics"]

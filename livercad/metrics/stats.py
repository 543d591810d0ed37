"""Paired statistics for comparing arms, and the (cluster) bootstrap shared by all metric modules.

* :func:`mcnemar_exact` / :func:`mcnemar_chi2`: paired per-case correctness of two arms.
* :func:`chi2_accuracy`: Pearson χ² on the arm × (correct, wrong) 2×2 table, as Nowak et al. (2021)
  used; it treats the arms as independent samples, so prefer McNemar for paired designs.
* :func:`delong_test` / :func:`delong_ci`: DeLong (1988) AUC variance, fast midrank algorithm of
  Sun & Xu (2014), O(n log n).
* :func:`holm`: Holm step-down adjusted p-values.
* :func:`bootstrap_weights` / :func:`paired_bootstrap_diff`: percentile bootstrap, resampling whole
  patients (groups) with replacement when ``groups`` is given; :func:`bootstrap_diff_summary`: the CI and
  p-value of a paired difference from its replicates (also the ablation's macro-AUC difference).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from livercad.errors import InputError


def bootstrap_weights(n: int, *, groups: Sequence[Any] | None = None, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """Resampling counts for a (cluster) bootstrap, as an ``(n_boot, n)`` integer matrix.

    Row ``b`` says how many times each case enters replicate ``b``. With ``groups`` (one patient id
    per case) whole groups are drawn with replacement and each case inherits its group's count, so
    all cases of a patient stay together.

    Example:
        >>> w = bootstrap_weights(4, groups=["a", "a", "b", "c"], n_boot=3)
        >>> w.shape, bool((w[:, 0] == w[:, 1]).all())
        ((3, 4), True)
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        idx, n_units = np.arange(n), n
    else:
        if len(groups) != n:
            raise InputError(None, f"groups: expected {n} ids (one per case), got {len(groups)}")
        _, idx = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        n_units = int(idx.max()) + 1 if n else 0
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    counts = np.zeros((n_boot, n_units), dtype=np.int64)
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1)
    return counts[:, idx]


def bootstrap_replicates(
    n: int,
    fn: Callable[[np.ndarray], float],
    *,
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``fn(idx)`` for the case indices of each resample of :func:`bootstrap_weights` (same draws per seed).

    Example:
        >>> x = np.arange(5.0)
        >>> bootstrap_replicates(5, lambda i: x[i].mean(), n_boot=3).shape
        (3,)
    """
    cases = np.arange(n)
    w = bootstrap_weights(n, groups=groups, n_boot=n_boot, seed=seed)
    return np.array([fn(np.repeat(cases, row)) for row in w], dtype=float)


def percentile_ci(values: np.ndarray, ci: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, ignoring NaN replicates (``nan`` if none is finite)."""
    if not 0 < ci < 1:
        raise InputError(None, f"ci: expected a level in (0, 1), got {ci}")
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - ci) / 2
    return float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))


def weighted_auc(is_pos: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and Youden-optimal threshold for each row of case weights ``w`` (shape ``(R, n)``).

    AUC is the Mann-Whitney statistic with ties counted ½, i.e. ``roc_auc_score`` on the data where case
    i is repeated ``w[r, i]`` times; ``nan`` when a class has zero weight.
    """
    order = np.argsort(-score, kind="stable")
    s, pos = score[order], is_pos[order].astype(float)
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    wo = w[:, order]
    wp = np.add.reduceat(wo * pos, starts, axis=1)  # positive weight per distinct score, descending
    wn = np.add.reduceat(wo * (1.0 - pos), starts, axis=1)
    cp, cn = np.cumsum(wp, axis=1), np.cumsum(wn, axis=1)
    big_p, big_n = cp[:, -1:], cn[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (wn * (cp - 0.5 * wp)).sum(axis=1) / (big_p * big_n)[:, 0]
        j = np.concatenate([np.zeros((w.shape[0], 1)), cp / big_p - cn / big_n], axis=1)
    thr = np.r_[np.inf, s[starts]][np.argmax(np.nan_to_num(j, nan=-1.0), axis=1)]
    thr[np.isnan(auc)] = np.nan
    return auc, thr


def _discordant(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int]:
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise InputError(None, f"correct_a/correct_b: expected two equal 1-D sequences, got {a.shape}, {b.shape}")
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float]:
    """Exact (binomial) McNemar test on paired per-case correctness.

    Returns:
        ``b`` (A right, B wrong), ``c`` (A wrong, B right), ``statistic`` = min(b, c) and the two-sided
        ``pvalue`` = min(1, 2·P[Bin(b+c, ½) ≤ min(b, c)]) (1.0 when there is no discordant pair).

    Example:
        >>> mcnemar_exact([1, 1, 1, 0], [0, 0, 0, 0])["pvalue"]
        0.25
    """
    b, c = _discordant(correct_a, correct_b)
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), b + c, 0.5)))
    return {"b": b, "c": c, "statistic": float(min(b, c)), "pvalue": p}


def mcnemar_chi2(correct_a: Sequence[bool], correct_b: Sequence[bool], *, correction: bool = True) -> dict[str, float]:
    """Asymptotic McNemar χ² test, ``(|b-c| - 1)² / (b+c)`` with continuity correction (as statsmodels).

    With no discordant pair the statistic is 0 and the p-value 1.0.

    Example:
        >>> round(mcnemar_chi2([1] * 10 + [0] * 2, [0] * 10 + [1] * 2)["statistic"], 3)
        4.083
    """
    b, c = _discordant(correct_a, correct_b)
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "pvalue": 1.0}
    stat = (abs(b - c) - float(correction)) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": stat, "pvalue": float(stats.chi2.sf(stat, 1))}


def chi2_accuracy(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """χ² test of two accuracies on the 2×2 table arm × (correct, wrong) (``scipy.stats.chi2_contingency``).

    Returns:
        ``statistic``, ``pvalue``, ``dof``, ``table`` and the two accuracies ``acc_a``/``acc_b``;
        statistic 0 and p-value 1.0 when a column of the table is empty (both arms all right/all wrong).

    Example:
        >>> chi2_accuracy([1] * 20, [1] * 10 + [0] * 10)["pvalue"] < 0.01
        True
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise InputError(None, f"correct_a/correct_b: expected non-empty 1-D sequences, got {a.shape}, {b.shape}")
    table = np.array([[a.sum(), (~a).sum()], [b.sum(), (~b).sum()]])
    out: dict[str, Any] = {"table": table.tolist(), "acc_a": float(a.mean()), "acc_b": float(b.mean())}
    if (table.sum(axis=0) == 0).any():
        return out | {"statistic": 0.0, "pvalue": 1.0, "dof": 1}
    res = stats.chi2_contingency(table)
    return out | {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "dof": int(res.dof)}


def _binary_scores(y_true: Sequence[int], *scores: Sequence[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y_true)
    labels, counts = np.unique(y, return_counts=True)
    if y.ndim != 1 or labels.tolist() != [0, 1] or counts.min() < 2:
        found = dict(zip(labels.tolist()[:5], counts.tolist()[:5], strict=True))
        raise InputError(None, f"y_true: expected 0/1 labels with >= 2 cases of each, got counts {found}")
    out = [np.asarray(s, dtype=float) for s in scores]
    for s in out:
        if s.shape != y.shape or not np.isfinite(s).all():
            raise InputError(None, f"scores: expected {y.shape[0]} finite values, got shape {s.shape}")
    return y.astype(bool), out


def _delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance via midranks (Sun & Xu 2014)."""
    pos, neg = [np.stack([s[y] for s in scores]), np.stack([s[~y] for s in scores])]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return auc, cov


def delong_test(y_true: Sequence[int], score_a: Sequence[float], score_b: Sequence[float]) -> dict[str, float]:
    """DeLong test for the difference of two correlated ROC AUCs (same cases, two scores).

    Returns:
        ``auc_a``, ``auc_b``, ``diff`` (a − b), ``z``, two-sided ``pvalue`` and ``var`` (variance of
        the difference). When the variance is 0 (e.g. identical rankings) ``z`` is 0 and the p-value 1.0.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1]
        >>> r = delong_test(y, [0.1, 0.4, 0.35, 0.8, 0.2, 0.9], [0.3, 0.2, 0.6, 0.7, 0.5, 0.4])
        >>> round(r["auc_a"], 3), 0 <= r["pvalue"] <= 1
        (0.889, True)
    """
    y, (a, b) = _binary_scores(y_true, score_a, score_b)
    auc, cov = _delong(y, [a, b])
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = diff / np.sqrt(var) if var > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z))) if var > 0 else 1.0
    return {
        "auc_a": float(auc[0]),
        "auc_b": float(auc[1]),
        "diff": diff,
        "z": float(z),
        "pvalue": p,
        "var": var,
    }


def delong_ci(y_true: Sequence[int], score: Sequence[float], ci: float = 0.95) -> tuple[float, float]:
    """Normal-approximation CI of one ROC AUC with the DeLong variance, clipped to [0, 1].

    Example:
        >>> lo, hi = delong_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
        >>> 0 <= lo <= 0.889 <= hi <= 1
        True
    """
    if not 0 < ci < 1:
        raise InputError(None, f"ci: expected a level in (0, 1), got {ci}")
    y, (s,) = _binary_scores(y_true, score)
    auc, cov = _delong(y, [s])
    half = stats.norm.ppf(0.5 + ci / 2) * np.sqrt(max(float(cov[0, 0]), 0.0))
    return max(0.0, float(auc[0] - half)), min(1.0, float(auc[0] + half))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaNs are kept in place and not counted).

    Example:
        >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03])]
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out.tolist()


def paired_bootstrap_diff(
    y_true: Sequence[int],
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Bootstrap CI and two-sided p-value of ``metric_fn(y, proba_a) - metric_fn(y, proba_b)``.

    Both arms are evaluated on the same resampled cases (patients when ``groups`` is given);
    replicates where the difference is NaN are skipped; CI and p-value by :func:`bootstrap_diff_summary`.

    Returns:
        ``diff``, ``ci_low``, ``ci_high`` (95 % percentile interval), ``pvalue``, ``n_valid``.
    """
    y, pa, pb = np.asarray(y_true), np.asarray(proba_a), np.asarray(proba_b)
    if not len(y) == len(pa) == len(pb):
        raise InputError(None, f"expected equal lengths, got y_true {len(y)}, proba_a {len(pa)}, proba_b {len(pb)}")
    diff = float(metric_fn(y, pa) - metric_fn(y, pb))
    reps = bootstrap_replicates(len(y), lambda i: metric_fn(y[i], pa[i]) - metric_fn(y[i], pb[i]), groups=groups,
                                n_boot=n_boot, seed=seed)
    return bootstrap_diff_summary(diff, reps)


def bootstrap_diff_summary(diff: float, reps: np.ndarray) -> dict[str, float]:
    """A paired difference with its bootstrap replicates: 95 % percentile CI and two-sided p-value.

    NaN replicates are skipped; over the B valid ones the p-value is
    ``min(1, 2·min(#(d* ≤ 0) + 1, #(d* ≥ 0) + 1) / (B + 1))`` (``nan`` when B = 0).

    Returns:
        ``diff``, ``ci_low``, ``ci_high``, ``pvalue``, ``n_valid``.

    Example:
        >>> bootstrap_diff_summary(0.2, np.array([0.1, 0.3, np.nan, 0.2]))["pvalue"]
        0.5
    """
    valid = np.asarray(reps, dtype=float)
    valid = valid[~np.isnan(valid)]
    low, high = percentile_ci(valid)
    k = valid.size
    p = min(1.0, 2 * min(np.sum(valid <= 0) + 1, np.sum(valid >= 0) + 1) / (k + 1)) if k else float("nan")
    return {"diff": float(diff), "ci_low": low, "ci_high": high, "pvalue": float(p), "n_valid": int(k)}

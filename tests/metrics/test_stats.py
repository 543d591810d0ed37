"""Paired tests against statsmodels / scipy and an independent O(n²) DeLong; bootstrap helpers."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from livercad.errors import InputError
from livercad.metrics.stats import (
    bootstrap_replicates,
    bootstrap_weights,
    chi2_accuracy,
    delong_ci,
    delong_test,
    holm,
    mcnemar_chi2,
    mcnemar_exact,
    paired_bootstrap_diff,
    weighted_auc,
)


def paired_correct(seed: int, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(n) < 0.8
    b = np.where(rng.random(n) < 0.3, rng.random(n) < 0.6, a)
    return a, b


def sm_table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])


def test_mcnemar_exact_hand_worked():
    a = [True] * 6 + [False] * 1 + [True] * 5  # 6 cases only A right, 1 only B right, 5 both right
    b = [False] * 6 + [True] * 1 + [True] * 5
    r = mcnemar_exact(a, b)
    assert (r["b"], r["c"], r["statistic"]) == (6, 1, 1.0)
    assert r["pvalue"] == pytest.approx(2 * (comb(7, 0) + comb(7, 1)) / 2**7)
    assert mcnemar_exact([True, False], [True, False])["pvalue"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_mcnemar_equals_statsmodels(seed):
    a, b = paired_correct(seed)
    table = sm_table(a, b)
    assert mcnemar_exact(a, b)["pvalue"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    for corr in (True, False):
        ref = mcnemar(table, exact=False, correction=corr)
        got = mcnemar_chi2(a, b, correction=corr)
        assert got["statistic"] == pytest.approx(ref.statistic, rel=1e-12)
        assert got["pvalue"] == pytest.approx(ref.pvalue, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_chi2_accuracy_equals_scipy(seed):
    a, b = paired_correct(seed)
    res = stats.chi2_contingency([[a.sum(), (~a).sum()], [b.sum(), (~b).sum()]])
    got = chi2_accuracy(a, b)
    assert got["statistic"] == pytest.approx(res.statistic) and got["pvalue"] == pytest.approx(res.pvalue)
    assert got["acc_a"] == a.mean() and got["acc_b"] == b.mean()
    assert chi2_accuracy([True] * 5, [True] * 4)["pvalue"] == 1.0  # no wrong answer anywhere


def naive_delong(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) structural components, straight from the definition (O(m·n))."""
    aucs, v10s, v01s = [], [], []
    for s in scores:
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        aucs.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    m, n = len(v10s[0]), len(v01s[0])
    s10 = np.cov(np.array(v10s), ddof=1).reshape(len(scores), len(scores))
    s01 = np.cov(np.array(v01s), ddof=1).reshape(len(scores), len(scores))
    return np.array(aucs), s10 / m + s01 / n


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_delong_equals_naive_reference_and_sklearn(seed, ties):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 70)
    a = y * 0.8 + rng.normal(size=70)
    b = y * 0.4 + 0.5 * a + rng.normal(size=70)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    r = delong_test(y, a, b)
    aucs, cov = naive_delong(y, [a, b])
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    assert r["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert r["auc_b"] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert r["var"] == pytest.approx(var, rel=1e-9)
    assert r["z"] == pytest.approx(z, rel=1e-9)
    assert r["pvalue"] == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-10)
    lo, hi = delong_ci(y, a)
    half = 1.959963984540054 * np.sqrt(cov[0, 0])
    assert (lo, hi) == pytest.approx((max(0, aucs[0] - half), min(1, aucs[0] + half)), abs=1e-10)
    assert lo < r["auc_a"] < hi


def test_delong_identical_scores_and_bad_labels():
    y, s = np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    r = delong_test(y, s, s)
    assert r["diff"] == 0 and r["pvalue"] == 1.0
    with pytest.raises(InputError, match="y_true"):
        delong_test([0, 0, 0, 1], s[:4], s[:4])
    with pytest.raises(InputError, match="y_true"):
        delong_ci([0, 1, 2, 1], s[:4])


def test_holm_equals_statsmodels():
    p = np.random.default_rng(0).uniform(0, 0.2, 12)
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-15)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.02, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=15))
def test_holm_monotone_and_not_below_raw(p):
    adj = np.array(holm(p))
    raw = np.array(p)
    assert np.all(adj >= raw - 1e-15) and np.all(adj <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adj[order]) >= -1e-15)


def test_bootstrap_weights_keep_patients_together():
    groups = ["a", "a", "b", "c", "c", "c"]
    w = bootstrap_weights(6, groups=groups, n_boot=200, seed=1)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()  # 3 patients drawn per replicate
    plain = bootstrap_weights(6, n_boot=200, seed=1)
    assert (plain.sum(axis=1) == 6).all() and not (plain[:, 0] == plain[:, 1]).all()
    assert np.array_equal(bootstrap_replicates(6, len, n_boot=5), np.full(5, 6.0))
    with pytest.raises(InputError, match="groups"):
        bootstrap_weights(5, groups=groups)


@pytest.mark.parametrize("seed", range(3))
def test_weighted_auc_equals_sklearn_on_expanded_data(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 40).astype(bool)
    s = np.round(y * 0.5 + rng.random(40), 1)  # ties on purpose
    w = rng.integers(0, 4, size=(6, 40)).astype(float)
    auc, thr = weighted_auc(y, s, w)
    for r in range(6):
        idx = np.repeat(np.arange(40), w[r].astype(int))
        assert auc[r] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
        fpr, tpr, t = roc_curve(y[idx], s[idx])
        assert thr[r] == t[np.argmax(tpr - fpr)]
    assert np.isnan(weighted_auc(y, s, np.where(y, 1.0, 0.0)[None])[0][0])  # no negatives


def _acc(y, p):
    return float(np.mean(p.argmax(axis=1) == y))


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    good = np.c_[1 - y * 0.8 - 0.1, y * 0.8 + 0.1]
    noisy = np.clip(good + rng.normal(0, 0.45, good.shape), 0, None)
    noisy /= noisy.sum(axis=1, keepdims=True)
    same = paired_bootstrap_diff(y, good, good, _acc, n_boot=200)
    assert same["diff"] == 0 and (same["ci_low"], same["ci_high"]) == (0, 0) and same["pvalue"] == 1.0
    r = paired_bootstrap_diff(y, good, noisy, _acc, n_boot=400)
    assert r["diff"] == pytest.approx(_acc(y, good) - _acc(y, noisy))
    assert 0 < r["ci_low"] <= r["diff"] <= r["ci_high"] and r["pvalue"] < 0.01
    # resampling patients: two identical cases per patient give the same interval as one case each
    groups = np.repeat(np.arange(120), 2)
    dup = paired_bootstrap_diff(np.repeat(y, 2), np.repeat(good, 2, 0), np.repeat(noisy, 2, 0), _acc,
                                groups=groups, n_boot=400)  # fmt: skip
    single = paired_bootstrap_diff(y, good, noisy, _acc, groups=np.arange(120), n_boot=400)
    assert (dup["ci_low"], dup["ci_high"]) == pytest.approx((single["ci_low"], single["ci_high"]))


def test_bootstrap_diff_summary_skips_nan_and_counts_both_tails():
    from livercad.metrics.stats import bootstrap_diff_summary

    r = bootstrap_diff_summary(0.1, np.array([0.2, -0.1, np.nan, 0.3, 0.0]))
    assert r["n_valid"] == 4 and r["pvalue"] == pytest.approx(min(1.0, 2 * min(2 + 1, 3 + 1) / 5))
    assert r["diff"] == 0.1 and r["ci_low"] < 0 < r["ci_high"]
    empty = bootstrap_diff_summary(0.0, np.array([np.nan]))
    assert empty["n_valid"] == 0 and np.isnan(empty["pvalue"]) and np.isnan(empty["ci_low"])

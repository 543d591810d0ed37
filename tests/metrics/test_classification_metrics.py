"""Classification metrics equal scikit-learn's; bootstrap CIs honour patients and contain point values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from livercad.errors import InputError
from livercad.metrics.classification import (
    _validate,
    bootstrap_ci,
    classification_metrics,
    classification_report,
    stratify_by_dice,
)
from livercad.metrics.replicates import replicate_metrics

BIN = ["normal", "cirrhosis"]
TRI = ["normal", "steatosis", "cirrhosis"]


def predictions(n: int, k: int, seed: int, signal: float = 1.2, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if decimals is not None:  # coarse scores -> ties in the ROC
        p[:, 1:] = np.round(p[:, 1:], decimals) / (1 + 1e-9)
        p[:, 0] = 1 - p[:, 1:].sum(axis=1)
    return y, p


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("positive", [1, 0])
def test_binary_metrics_equal_sklearn(seed, positive):
    y, p = predictions(60, 2, seed)
    m = classification_metrics(y, p, class_names=BIN, positive=positive)
    pred, neg = p.argmax(axis=1), 1 - positive
    sens = skm.recall_score(y, pred, pos_label=positive)
    spec = skm.recall_score(y, pred, pos_label=neg)
    fpr, tpr, thr = skm.roc_curve(y == positive, p[:, positive])
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "sensitivity": sens,
        "specificity": spec,
        "precision": skm.precision_score(y, pred, pos_label=positive),
        "f1": skm.f1_score(y, pred, pos_label=positive),
        "youden_j": sens + spec - 1,
        "youden_threshold": thr[np.argmax(tpr - fpr)],
        "roc_auc": skm.roc_auc_score(y == positive, p[:, positive]),
        "top1_accuracy": skm.accuracy_score(y, pred),
        "brier": np.mean((p[:, positive] - (y == positive)) ** 2),
    }
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert "top2_accuracy" not in m  # k must be < K
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["per_class_recall"] == pytest.approx(dict(zip(BIN, skm.recall_score(y, pred, average=None), strict=True)))
    assert m["n"] == 60


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_metrics_equal_sklearn(seed):
    y, p = predictions(90, 3, seed)
    m = classification_metrics(y, p, class_names=TRI)
    pred = p.argmax(axis=1)
    mcm = skm.multilabel_confusion_matrix(y, pred)  # per class [[tn, fp], [fn, tp]]
    spec = np.mean([c[0, 0] / (c[0, 0] + c[0, 1]) for c in mcm])
    sens = skm.recall_score(y, pred, average="macro")
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "sensitivity": sens,
        "specificity": spec,
        "precision": skm.precision_score(y, pred, average="macro"),
        "f1": skm.f1_score(y, pred, average="macro"),
        "youden_j": sens + spec - 1,
        "roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "top1_accuracy": skm.top_k_accuracy_score(y, p, k=1),
        "top2_accuracy": skm.top_k_accuracy_score(y, p, k=2),
        "brier": np.mean(((p - np.eye(3)[y]) ** 2).sum(axis=1)),
    }
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert math.isnan(m["youden_threshold"])
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()


@pytest.mark.parametrize(("k", "names"), [(2, BIN), (3, TRI)])
@pytest.mark.parametrize("decimals", [None, 1])
def test_vectorised_replicates_equal_metrics_on_resampled_cases(k, names, decimals):
    y, p = predictions(50, k, seed=7, decimals=decimals)
    yv, pv, pos = _validate(y, p, names, None)
    rng = np.random.default_rng(0)
    w = np.vstack([np.ones(50), rng.integers(0, 3, size=(4, 50))]).astype(float)
    reps = replicate_metrics(yv, pv, pos, [kk for kk in (1, 2) if kk < k], w)
    for r, row in enumerate(w):
        idx = np.repeat(np.arange(50), row.astype(int))
        point = classification_metrics(y[idx], p[idx], class_names=names)
        for name, values in reps.items():
            if name.startswith("recall/"):
                expected = point["per_class_recall"][names[int(name.split("/")[1])]]
            else:
                expected = point[name]
            assert values[r] == pytest.approx(expected, abs=1e-12, nan_ok=True), (name, r)


def test_absent_class_gives_nan_auc_without_crash():
    y, p = predictions(30, 3, seed=1)
    y[y == 2] = 0
    m = classification_metrics(y, p, class_names=TRI)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["per_class_recall"]["cirrhosis"])
    yb, pb = predictions(30, 2, seed=1)
    mb = classification_metrics(np.ones(30, int), pb, class_names=BIN)
    assert math.isnan(mb["roc_auc"]) and math.isnan(mb["specificity"]) and mb["n"] == 30


@pytest.mark.parametrize(("k", "names"), [(2, BIN), (3, TRI)])
def test_report_cis_contain_point_values(k, names):
    y, p = predictions(120, k, seed=3)
    groups = [f"pt{i // 2}" for i in range(120)]
    r = classification_report(y, p, class_names=names, groups=groups, n_boot=400)
    point = classification_metrics(y, p, class_names=names)
    for name, e in r.items():
        if name in ("confusion_matrix", "n", "per_class_recall") or (name == "youden_threshold" and k == 3):
            continue
        assert e["value"] == point[name]
        assert e["ci_low"] <= e["value"] <= e["ci_high"], name
        assert e["ci_low"] < e["ci_high"] and e["n_boot_valid"] == 400, name
    for c in names:
        e = r["per_class_recall"][c]
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
    assert r["confusion_matrix"] == point["confusion_matrix"] and r["n"] == 120


def test_report_groups_are_honoured():
    y, p = predictions(80, 2, seed=4)
    patients = np.arange(80)
    y2, p2, g2 = np.repeat(y, 2), np.repeat(p, 2, axis=0), np.repeat(patients, 2)
    single = classification_report(y, p, class_names=BIN, groups=patients, n_boot=300)
    dup = classification_report(y2, p2, class_names=BIN, groups=g2, n_boot=300)
    naive = classification_report(y2, p2, class_names=BIN, n_boot=300)
    for name in ("accuracy", "roc_auc", "brier", "sensitivity", "f1"):
        assert dup[name]["value"] == pytest.approx(single[name]["value"])  # duplicating changes nothing
        assert (dup[name]["ci_low"], dup[name]["ci_high"]) == pytest.approx(
            (single[name]["ci_low"], single[name]["ci_high"])
        )
    width = [
        naive["roc_auc"]["ci_high"] - naive["roc_auc"]["ci_low"],
        dup["roc_auc"]["ci_high"] - dup["roc_auc"]["ci_low"],
    ]
    assert width[0] < 0.85 * width[1]  # case-level resampling of duplicated cases is overconfident


def test_report_skips_replicates_with_a_missing_class():
    y, p = predictions(24, 3, seed=5)
    y[:] = 0
    y[:2] = 2  # only two cirrhosis cases
    y[2:12] = 1
    r = classification_report(y, p, class_names=TRI, n_boot=300)
    assert 0 < r["roc_auc"]["n_boot_valid"] < 300
    assert r["accuracy"]["n_boot_valid"] == 300
    assert r["roc_auc"]["ci_low"] <= r["roc_auc"]["ci_high"]


def test_bootstrap_ci_generic_metric():
    y, p = predictions(100, 2, seed=6)

    def sensitivity(yy, pp):  # nan when a resample has no positive case
        return float(np.mean(pp[yy == 1].argmax(axis=1) == 1)) if (yy == 1).any() else float("nan")

    lo, hi = bootstrap_ci(y, p, sensitivity, n_boot=300)
    assert lo <= sensitivity(y, p) <= hi and lo < hi
    g = np.arange(100)
    dup = bootstrap_ci(np.repeat(y, 3), np.repeat(p, 3, axis=0), sensitivity, groups=np.repeat(g, 3), n_boot=300)
    assert dup == pytest.approx(bootstrap_ci(y, p, sensitivity, groups=g, n_boot=300))
    few = np.r_[np.ones(2, int), np.zeros(8, int)]  # many resamples without a positive case are skipped
    lo, hi = bootstrap_ci(few, np.tile([[0.2, 0.8]], (10, 1)), sensitivity, n_boot=200)
    assert (lo, hi) == (1.0, 1.0)


def test_stratify_by_dice():
    y, p = predictions(60, 2, seed=8)
    dice = np.linspace(0.5, 1.0, 60)
    dice[0] = np.nan
    s = stratify_by_dice(y, p, dice, threshold=0.9, class_names=BIN, n_boot=100)
    good, poor = dice >= 0.9, dice < 0.9
    assert (s["n_good"], s["n_poor"], s["n_nan_dice"]) == (good.sum(), poor.sum(), 1)
    assert s["good"]["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y[good], p[good].argmax(1)))
    assert s["poor"]["roc_auc"]["value"] == pytest.approx(skm.roc_auc_score(y[poor], p[poor, 1]))
    assert stratify_by_dice(y, p, np.ones(60), class_names=BIN, n_boot=10)["poor"] is None


def test_invalid_inputs():
    y, p = predictions(10, 3, seed=0)
    with pytest.raises(InputError, match="proba"):
        classification_metrics(y, p[:, :2], class_names=TRI)
    with pytest.raises(InputError, match="proba"):
        classification_metrics(y, p * 2, class_names=TRI)
    with pytest.raises(InputError, match="y_true"):
        classification_metrics(y + 1, p, class_names=TRI)
    with pytest.raises(InputError, match="positive"):
        classification_metrics(y, p, class_names=TRI, positive=2)
    with pytest.raises(InputError, match="top_k"):
        classification_metrics(y, p, class_names=TRI, top_k=(0,))


def test_auc_with_ci_is_sklearn_auc_with_the_delong_interval():
    from livercad.metrics.classification import auc_with_ci
    from livercad.metrics.stats import delong_ci

    y, p = predictions(40, 2, 3)
    r = auc_with_ci(y, p)
    assert r.auc == skm.roc_auc_score(y, p[:, 1]) and (r.ci_low, r.ci_high) == delong_ci(y, p[:, 1])
    assert auc_with_ci(y, p, positive=0).auc == skm.roc_auc_score(y == 0, p[:, 0])
    assert math.isnan(auc_with_ci(y, p, ci=False).ci_low) and auc_with_ci(y, p, ci=False).note is None
    one = auc_with_ci(np.zeros(6, int), np.tile([[0.6, 0.4]], (6, 1)))
    assert math.isnan(one.auc) and math.isnan(one.ci_high) and "2 cases of each" in one.note
    y3, p3 = predictions(60, 3, 4)
    r3 = auc_with_ci(y3, p3)
    assert r3.auc == skm.roc_auc_score(y3, p3, multi_class="ovr", average="macro") and math.isnan(r3.ci_low)

"""Ablation statistics on hand-made per-case predictions, against statsmodels, scipy, scikit-learn and
an independent DeLong implementation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from livercad.metrics.paired import compare
from livercad.metrics.stats import paired_bootstrap_diff
from livercad.pipeline.study import ablation
from livercad.pipeline.study.ablation_stats import (
    SCALARS,
    arm_statistics,
    compare_to_reference,
    mean_sd,
    scalar_metrics,
)
from tests.pipeline.study.synthetic import delong_reference

CLASSES = ["normal", "cirrhosis"]
Y = np.array([0] * 10 + [1] * 10)
# positive-class scores of two arms on the same 20 cases: the reference ranks better than the arm
S_REF = np.array([.10, .30, .20, .60, .40, .55, .20, .70, .15, .35, .80, .45, .90, .35, .65, .60, .30, .75, .85, .95])
S_ARM = np.array([.40, .20, .65, .70, .30, .45, .60, .35, .52, .25, .55, .40, .85, .48, .70, .62, .20, .58, .90, .66])
GROUPS = [f"p{i // 2}" for i in range(20)]  # two cases per patient


def _proba(s: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - s, s])


def test_binary_compare_equals_statsmodels_scipy_and_delong() -> None:
    c = compare(Y, _proba(S_ARM), _proba(S_REF))
    ca, cr = (S_ARM > 0.5) == Y, (S_REF > 0.5) == Y
    paired = [[np.sum(ca & cr), np.sum(ca & ~cr)], [np.sum(~ca & cr), np.sum(~ca & ~cr)]]
    assert paired[0][1] + paired[1][0] >= 4  # enough discordant pairs for the tests to mean something
    assert c["mcnemar"]["pvalue"] == pytest.approx(mcnemar(paired, exact=True).pvalue, abs=1e-12)
    assert c["mcnemar_chi2"]["pvalue"] == pytest.approx(mcnemar(paired, exact=False, correction=True).pvalue,
                                                        abs=1e-12)
    table = np.array([[ca.sum(), (~ca).sum()], [cr.sum(), (~cr).sum()]])
    assert c["chi2"]["pvalue"] == pytest.approx(stats.chi2_contingency(table, correction=True).pvalue, abs=1e-12)
    diff, var, p = delong_reference(Y, S_ARM, S_REF)
    auc = c["auc_diff"]
    assert auc["method"] == "delong" and c["note"] is None
    assert auc["diff"] == pytest.approx(roc_auc_score(Y, S_ARM) - roc_auc_score(Y, S_REF), abs=1e-12)
    assert auc["diff"] == pytest.approx(diff, abs=1e-12) and auc["pvalue"] == pytest.approx(p, abs=1e-9)
    assert auc["ci_low"] < auc["diff"] < auc["ci_high"]
    assert (auc["ci_high"] - auc["ci_low"]) / 2 == pytest.approx(stats.norm.ppf(0.975) * np.sqrt(var), rel=1e-9)


def test_delong_failure_is_a_note_not_a_crash() -> None:
    y = np.zeros(6, dtype=int)  # one class only: AUC undefined
    c = compare(y, _proba(S_ARM[:6]), _proba(S_REF[:6]))
    assert np.isnan(c["auc_diff"]["pvalue"]) and c["note"].startswith("DeLong skipped")


def _arm(name: str, region: str, strategy: str, s: np.ndarray) -> dict[str, Any]:
    return {"name": name, "region": region, "strategy": strategy, "backbone": "resnet18", "proba_test": _proba(s)}


def test_compare_to_reference_pairs_by_strategy_and_holm_equals_statsmodels() -> None:
    rng = np.random.default_rng(4)
    noisy = [np.clip(S_REF + rng.normal(0, sd, 20), 0.01, 0.99) for sd in (0.05, 0.3, 0.5)]
    arms = [_arm("full/frozen", "full", "frozen", S_REF), _arm("mask/frozen", "mask", "frozen", S_ARM),
            _arm("crop/frozen", "crop", "frozen", noisy[0]), _arm("full/finetune", "full", "finetune", noisy[1]),
            _arm("mask/finetune", "mask", "finetune", noisy[2])]
    comps = compare_to_reference(arms, "full", Y, GROUPS, n_boot=200, seed=1)
    assert [(c["arm"], c["reference"]) for c in comps] == [
        ("mask/frozen", "full/frozen"), ("crop/frozen", "full/frozen"), ("mask/finetune", "full/finetune")]
    ref_of = {"mask/frozen": S_REF, "crop/frozen": S_REF, "mask/finetune": noisy[1]}
    arm_of = {"mask/frozen": S_ARM, "crop/frozen": noisy[0], "mask/finetune": noisy[2]}
    for c in comps:  # each comparison is compare() on the right pair
        alone = compare(Y, _proba(arm_of[c["arm"]]), _proba(ref_of[c["arm"]]))
        assert c["auc_diff"]["pvalue"] == pytest.approx(alone["auc_diff"]["pvalue"], abs=1e-12)
    for fam in ("mcnemar", "chi2", "auc_diff"):
        raw = [c[fam]["pvalue"] for c in comps]
        expected = multipletests(raw, method="holm")[1]
        assert [c[fam]["pvalue_holm"] for c in comps] == pytest.approx(list(expected), abs=1e-12), fam
    assert len({c["auc_diff"]["pvalue_holm"] for c in comps}) > 1


def _runs(n_seeds: int, with_val: bool) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    runs = []
    for i in range(n_seeds):
        s = np.clip(S_ARM + rng.normal(0, 0.15, 20), 0.01, 0.99)
        sv = np.clip(S_REF[6:14] + rng.normal(0, 0.1, 8), 0.01, 0.99)  # 4 + 4 validation cases
        runs.append({"seed": 10 + i, "proba_test": _proba(s), "proba_val": _proba(sv) if with_val else None,
                     "val_best": {"accuracy": 0.5 + 0.1 * i, "roc_auc": None if i == 0 else 0.7},
                     "weights": {"source": "random"}, "seconds": 1.0 + i, "best_epoch": i})
    return runs


def test_arm_statistics_per_seed_mean_sd_pooled_and_cis() -> None:
    runs = _runs(3, with_val=True)
    dice = 0.7 + 0.28 * ((np.arange(20) * 7) % 20) / 19  # Dice unrelated to the class (a permutation)
    dice[3] = np.nan
    out = arm_statistics(runs, Y, CLASSES, GROUPS, dice=dice, y_val=Y[6:14], n_boot=300, seed=2)
    seeds = [r["proba_test"] for r in runs]
    pooled = np.mean(seeds, axis=0)
    np.testing.assert_allclose(out["proba_test"], pooled, atol=1e-15)
    assert out["seeds"] == [10, 11, 12] and out["train_seconds"] == [1.0, 2.0, 3.0] and out["best_epoch"] == [0, 1, 2]
    aucs = [roc_auc_score(Y, p[:, 1]) for p in seeds]
    assert [m["roc_auc"] for m in out["per_seed"]] == pytest.approx(aucs)
    assert [m["accuracy"] for m in out["per_seed"]] == pytest.approx([accuracy_score(Y, p.argmax(1)) for p in seeds])
    assert out["mean_sd"]["roc_auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert out["mean_sd"]["roc_auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert out["pooled"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(Y, pooled[:, 1]))
    for name in SCALARS:
        e = out["pooled"][name]
        assert e["ci_low"] - 1e-12 <= e["value"] <= e["ci_high"] + 1e-12, name
        assert e["ci_low"] < e["ci_high"], name
    lo, hi = out["auc_delong_ci"]
    assert lo < out["pooled"]["roc_auc"]["value"] < hi
    val_pooled = np.mean([r["proba_val"] for r in runs], axis=0)
    assert out["val"]["source"] == "pooled"
    assert out["val"]["roc_auc"] == pytest.approx(roc_auc_score(Y[6:14], val_pooled[:, 1]))
    assert out["val"]["accuracy"] == pytest.approx(accuracy_score(Y[6:14], val_pooled.argmax(1)))
    strata = out["dice_strata"]
    assert strata["n_nan_dice"] == 0 and strata["n_good"] + strata["n_poor"] == 19  # the NaN-Dice case left out
    assert strata["threshold"] == pytest.approx(np.nanmedian(dice))
    good = (dice >= strata["threshold"]) & np.isfinite(dice)
    assert strata["n_good"] == good.sum()
    assert strata["good"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(Y[good], pooled[good, 1]))


def test_arm_statistics_falls_back_to_best_epoch_validation() -> None:
    out = arm_statistics(_runs(2, with_val=False), Y, CLASSES, GROUPS, y_val=Y[6:14], n_boot=100)
    assert out["val"]["source"] == "best-epoch"
    assert out["val"]["accuracy"] == pytest.approx(0.55)
    assert np.isnan(out["val"]["roc_auc"])  # seed 0 recorded no validation AUC
    assert "dice_strata" not in out
    none = arm_statistics(_runs(1, with_val=False), Y, CLASSES, GROUPS, dice=np.full(20, np.nan), n_boot=100)
    assert "val" not in none and "dice_strata" not in none  # no val split, no finite Dice


def test_scalar_metrics_equal_sklearn() -> None:
    m = scalar_metrics(Y, _proba(S_ARM), CLASSES)
    pred = (S_ARM > 0.5).astype(int)
    assert tuple(m) == SCALARS
    assert m["accuracy"] == pytest.approx(accuracy_score(Y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(Y, pred))
    assert m["brier"] == pytest.approx(brier_score_loss(Y, S_ARM))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(Y, S_ARM))


def test_mean_sd_ignores_nan_seeds() -> None:
    seeds = [{k: v for k in SCALARS} for v in (0.6, float("nan"), 0.8)]
    out = mean_sd(seeds)
    assert out["f1"]["mean"] == pytest.approx(0.7) and out["f1"]["sd"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    one = mean_sd(seeds[:2])
    assert one["f1"]["mean"] == pytest.approx(0.6) and np.isnan(one["f1"]["sd"])
    assert np.isnan(mean_sd(seeds[1:2])["f1"]["mean"])


def test_multiclass_compare_equals_the_looped_bootstrap() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 6)
    a = np.clip(np.eye(3)[y] + rng.random((18, 3)), 0, None)
    a /= a.sum(1, keepdims=True)
    b = rng.dirichlet([1, 1, 1], 18)
    groups = [f"p{i // 2}" for i in range(18)]
    c = compare(y, a, b, groups=groups, n_boot=100, seed=3)
    assert c["auc_diff"]["method"] == "bootstrap" and "DeLong skipped" in c["note"]

    def macro(yy: np.ndarray, p: np.ndarray) -> float:
        try:
            return roc_auc_score(yy, p, multi_class="ovr", labels=[0, 1, 2])
        except ValueError:
            return float("nan")

    ref = paired_bootstrap_diff(y, a, b, macro, groups=groups, n_boot=100, seed=3)  # loop + scikit-learn
    for key in ("diff", "ci_low", "ci_high", "pvalue", "n_valid"):
        assert c["auc_diff"][key] == pytest.approx(ref[key], abs=1e-12), key


def test_ablation_reexports_the_moved_names() -> None:
    assert ablation.compare is compare and ablation.SCALARS is SCALARS

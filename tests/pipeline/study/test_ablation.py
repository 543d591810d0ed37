"""The ablation study end to end on tiny synthetic stage-1 caches; statistics against independent references."""

from __future__ import annotations

import csv
import inspect
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from livercad.config import Config, load_config
from livercad.io.manifest import ManifestRow
from livercad.pipeline.study.ablation import arm_classify_config, arm_grid, run_ablation
from livercad.pipeline.training.orchestrate import PipelineTraining
from livercad.types import CaseSlices, Stage1Case
from tests.pipeline.study.synthetic import delong_reference, liver_discs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _case(i: int, label: int, split: str, rng: np.random.Generator, classes: list[str]) -> Stage1Case:
    s, z = 32, 6
    gt = liver_discs(rng, s, z)
    img = rng.normal(0, 0.4, (z, s, s)).astype(np.float32)
    img[gt > 0] += 0.3 * label  # a weak cue inside the liver ...
    img[:, 26:, 26:] += 0.3 * label  # ... and one outside it
    pred = gt.copy()
    if i % 3 == 0:
        pred[:, :, 19:] = 0  # an imperfect stage-1 mask
    cs = CaseSlices(f"c{i:02d}", f"p{i:02d}", label, torch.from_numpy(img), torch.from_numpy(pred).half(),
                    torch.from_numpy(pred), torch.from_numpy(gt), (1.0, 1.0, 3.0), classes[label])
    row = ManifestRow(f"c{i:02d}", f"p{i:02d}", Path("none.nii.gz"), None, classes[label], split)
    return Stage1Case(row, cs, {"dice": float(2 * (pred & gt).sum() / (pred.sum() + gt.sum()))}, "ct")


def _cohort(classes: list[str], n_test: int = 12) -> list[Stage1Case]:
    rng = np.random.default_rng(0)
    splits = ["train"] * 12 + ["val"] * 6 + ["test"] * n_test
    return [_case(i, i % len(classes), sp, rng, classes) for i, sp in enumerate(splits)]


def _config(classes: list[str], seeds: int, extra: list[str] | None = None) -> Config:
    return load_config(None, [
        "ablation.regions=[full, mask]", "ablation.strategies=[frozen]", "ablation.backbones=[resnet18]",
        f"ablation.seeds={seeds}", "ablation.n_boot=200", "ablation.saliency_cases=2",
        "ablation.mask_quality_targets=[1.0, 0.8]", f"classify.classes={json.dumps(classes)}",
        "classify.weights=none", "classify.image_size=32", "classify.train.max_epochs=2",
        "classify.train.steps_per_epoch=2",
        "classify.train.batch_size=8", *(extra or [])])



@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("ablation")
    res = run_ablation(_config(["normal", "cirrhosis"], seeds=2), _cohort(["normal", "cirrhosis"]), out,
                       progress=False)
    return res, json.loads(Path(res["json"]).read_text(encoding="utf-8")), out


def _yates_chi2_p(table: np.ndarray) -> float:
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    dev = np.abs(table - expected)
    chi2 = (((dev - np.minimum(0.5, dev)) ** 2) / expected).sum()
    return float(stats.chi2.sf(chi2, 1))


def test_outputs_exist_and_are_self_contained(binary: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    res, data, out = binary
    assert {Path(res[k]).name for k in ("report", "csv", "json")} == {"ablation.html", "ablation.csv", "ablation.json"}
    assert all(Path(res[k]).parent == out for k in ("report", "csv", "json"))
    page = Path(res["report"]).read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # every image inline
    assert page.count("data:image/png;base64,") >= 5  # forest, ROC, quality curve, attention bars, gallery
    for text in ("full/frozen", "mask/frozen", "McNemar", "Mask-quality", "inside-liver"):
        assert text in page
    rows = list(csv.DictReader(Path(res["csv"]).read_text(encoding="utf-8").splitlines()))
    assert [(r["arm"], r["seed"]) for r in rows] == [
        ("full/frozen", "0"), ("full/frozen", "1"), ("mask/frozen", "0"), ("mask/frozen", "1"),
        ("full/frozen", "pooled"), ("mask/frozen", "pooled")]
    assert [r["arm"] for r in res["summary_rows"]] == ["full/frozen", "mask/frozen"]
    assert res["summary_rows"][0]["p_delong"] == "ref"
    assert all(a["weights"][0]["source"] == "random" and a["seeds"] == [0, 1] for a in data["arms"])


def test_p_values_match_independent_references(binary: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    _, data, _ = binary
    y = np.array(data["cases"]["y_true"])
    arms = {a["name"]: np.array(a["proba_test"]) for a in data["arms"]}
    (comp,) = data["comparisons"]
    pa, pr = arms[comp["arm"]], arms[comp["reference"]]
    ca, cr = pa.argmax(1) == y, pr.argmax(1) == y
    table = [[np.sum(ca & cr), np.sum(ca & ~cr)], [np.sum(~ca & cr), np.sum(~ca & ~cr)]]
    assert comp["mcnemar"]["pvalue"] == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)
    chi_table = np.array([[ca.sum(), (~ca).sum()], [cr.sum(), (~cr).sum()]], dtype=float)
    if (chi_table.sum(0) > 0).all():
        assert comp["chi2"]["pvalue"] == pytest.approx(_yates_chi2_p(chi_table), abs=1e-12)
    diff, _, p = delong_reference(y, pa[:, 1], pr[:, 1])
    assert comp["auc_diff"]["diff"] == pytest.approx(diff, abs=1e-12)
    assert comp["auc_diff"]["diff"] == pytest.approx(roc_auc_score(y, pa[:, 1]) - roc_auc_score(y, pr[:, 1]))
    assert comp["auc_diff"]["pvalue"] == pytest.approx(p, abs=1e-9)
    assert comp["auc_diff"]["ci_low"] <= comp["auc_diff"]["diff"] <= comp["auc_diff"]["ci_high"]
    # Holm over the comparisons (one here: the adjusted p equals the raw one, as statsmodels says)
    assert comp["mcnemar"]["pvalue_holm"] == pytest.approx(
        multipletests([comp["mcnemar"]["pvalue"]], method="holm")[1][0])


def test_seed_statistics_and_cis(binary: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    _, data, _ = binary
    y = np.array(data["cases"]["y_true"])
    for arm in data["arms"]:
        seeds = [np.array(p) for p in arm["proba_test_seeds"]]
        np.testing.assert_allclose(arm["proba_test"], np.mean(seeds, axis=0), atol=1e-12)
        aucs = [roc_auc_score(y, p[:, 1]) for p in seeds]
        assert [s["roc_auc"] for s in arm["per_seed"]] == pytest.approx(aucs)
        accs = [accuracy_score(y, p.argmax(1)) for p in seeds]
        assert [s["accuracy"] for s in arm["per_seed"]] == pytest.approx(accs)
        assert arm["mean_sd"]["roc_auc"]["mean"] == pytest.approx(np.mean(aucs))
        assert arm["mean_sd"]["roc_auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1))
        assert arm["pooled"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, np.array(arm["proba_test"])[:, 1]))
        for name, e in arm["pooled"].items():
            if isinstance(e, dict) and None not in (e.get("ci_low"), e.get("ci_high"), e.get("value")):
                assert e["ci_low"] - 1e-9 <= e["value"] <= e["ci_high"] + 1e-9, (arm["name"], name)


def test_mask_quality_and_saliency(binary: tuple[dict[str, Any], dict[str, Any], Path]) -> None:
    _, data, _ = binary
    q = data["mask_quality"]
    assert q["region"] == "mask" and q["arm"] == "mask/frozen"
    assert {r["op"] for r in q["rows"]} == {"stage-1", "gt", "erode", "dilate", "shift", "drop"}
    for r in q["rows"]:
        if r["op"] not in ("stage-1", "gt"):
            assert abs(r["dice_mean"] - 0.8) < 0.1
    assert next(r for r in q["rows"] if r["op"] == "gt")["dice_mean"] == 1.0
    for sal in data["saliency"].values():
        fr = [c["fraction"] for c in sal["per_case"] if c["fraction"] is not None]
        assert len(sal["per_case"]) == 2 and all(0.0 <= f <= 1.0 for f in fr)
        if fr:
            assert sal["fraction"]["value"] == pytest.approx(np.mean(fr))


def test_arm_grid_adds_the_reference() -> None:
    cfg = load_config(None, ["ablation.regions=[mask, crop]", "ablation.strategies=[frozen, finetune]",
                             "ablation.backbones=[resnet18, resnet34]"])
    names = [a.name for a in arm_grid(cfg)]
    assert len(names) == 12 and names[:3] == ["full/frozen/resnet18", "mask/frozen/resnet18", "crop/frozen/resnet18"]


def test_arm_classify_config_applies_the_ablation_overrides() -> None:
    base = ["ablation.regions=[mask, crop]", "ablation.strategies=[frozen, scratch]", "classify.image_size=96",
            "classify.weights=imagenet", "classify.train.max_epochs=7"]
    plain = load_config(None, base)
    for arm in arm_grid(plain):
        c = arm_classify_config(plain, arm)
        assert (c.region, c.strategy, c.backbone) == (arm.region, arm.strategy, arm.backbone)
        assert c.image_size == 96 and c.train == plain.classify.train
        assert c.weights == ("none" if arm.strategy == "scratch" else "imagenet")
    cfg = load_config(None, [*base, "ablation.image_size=48", "ablation.train={max_epochs: 2, lr: 0.01}"])
    for arm in arm_grid(cfg):
        c = arm_classify_config(cfg, arm)
        assert c.image_size == 48 and c.train.max_epochs == 2 and c.train.lr == 0.01
    assert cfg.classify.image_size == 96 and cfg.classify.train.max_epochs == 7  # the classify section is untouched


def test_multiclass_run_uses_the_ablation_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from livercad.classify import fit as classify_train

    classes = ["normal", "steatosis", "cirrhosis"]
    seen: list[tuple[int, int, int, int]] = []
    real = classify_train.train_classifier

    def recording(*args: Any, **kwargs: Any) -> Any:
        ccfg = inspect.signature(real).bind(*args, **kwargs).arguments["cfg"]
        tr = real(*args, **kwargs)
        seen.append((ccfg.image_size, ccfg.train.max_epochs, tr.classifier.image_size, len(tr.history)))
        return tr

    monkeypatch.setattr(classify_train, "train_classifier", recording)
    cfg = _config(classes, 1, ["ablation.saliency=false", "ablation.mask_quality_targets=[0.8]",
                               "classify.image_size=64", "ablation.image_size=32",  # 64 would be the classify size
                               "ablation.train={max_epochs: 1, steps_per_epoch: 2, batch_size: 8}"])
    res = run_ablation(cfg, _cohort(classes, n_test=9), tmp_path, progress=False)
    assert res["comparisons"][0]["auc_diff"]["method"] == "bootstrap"
    assert Path(res["report"]).is_file() and len(res["summary_rows"]) == 2
    assert len(seen) == 2  # two arms x one seed, each trained at the override size and budget
    assert all(s[:3] == (32, 1, 32) and s[3] <= 1 for s in seen), seen


def test_from_config_reuses_a_given_segmenter(tiny_trained: PipelineTraining, tiny_bundle: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``--segmenter``: no stage-1 training; the given model segments every case of the cohort once."""
    import livercad.pipeline.study.ablation as ablation
    import livercad.pipeline.training.orchestrate as train

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("stage 1 must not be trained when a segmenter is given")

    seen: dict[str, Any] = {}
    monkeypatch.setattr(train, "train_stage1", no_training)
    monkeypatch.setattr(ablation, "_run", lambda cfg, stage1, out, progress, timing: seen.update(
        stage1=stage1, timing=timing) or {"report": str(out / "ablation.html")})
    manifest = Path(tiny_trained.rows[0].image).parents[1] / "manifest.csv"
    res = ablation.run_ablation_from_config(
        load_config(None, [f"data.manifest={manifest}", "classify.classes=[normal, cirrhosis]",
                           "classify.weights=none"]), tmp_path,
        progress=False, segmenter=tiny_bundle)
    assert res["report"].endswith("ablation.html") and "stage1_inference_s" in seen["timing"]
    ids = sorted(s.row.case_id for s in seen["stage1"])
    assert ids == sorted(r.case_id for r in tiny_trained.rows)
    assert all(0.0 <= s.seg_metrics["dice"] <= 1.0 for s in seen["stage1"])

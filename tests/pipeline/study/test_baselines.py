"""The ablation's external-mask and attenuation-rule arms: on the same statistics as the trained arms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from livercad.config import Config, load_config
from livercad.io.manifest import ManifestRow
from livercad.pipeline.study import baselines
from livercad.pipeline.study.ablation import run_ablation
from livercad.pipeline.study.ablation_data import AblationSplit
from livercad.types import CaseSlices, Stage1Case
from tests.pipeline.study.synthetic import liver_discs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["normal", "steatosis"]


def _case(i: int, label: int, split: str, rng: np.random.Generator, phase: str) -> Stage1Case:
    s, z = 32, 6
    gt = liver_discs(rng, s, z)
    img = rng.normal(0, 0.4, (z, s, s)).astype(np.float32)
    img[gt > 0] -= 0.3 * label  # fat darkens the liver
    ext = gt.copy()
    ext[:, :, 20:] = 0  # another tool's mask: a little smaller
    hu = 58.0 - 25.0 * label + float(rng.normal(0, 6))
    cs = CaseSlices(f"c{i:02d}", f"p{i:02d}", label, torch.from_numpy(img), torch.from_numpy(gt).half(),
                    torch.from_numpy(gt), torch.from_numpy(gt), (1.0, 1.0, 3.0), CLASSES[label],
                    torch.from_numpy(ext), {"mask": hu, "oracle-mask": hu, "spleen": 50.0 + float(rng.normal(0, 3))})
    row = ManifestRow(f"c{i:02d}", f"p{i:02d}", Path("none.nii.gz"), None, CLASSES[label], split,
                      extra={"contrast_phase": phase})
    return Stage1Case(row, cs, {"dice": 1.0}, "ct")


def _cohort(phase: str = "non-contrast") -> list[Stage1Case]:
    rng = np.random.default_rng(1)
    splits = ["train"] * 12 + ["val"] * 6 + ["test"] * 12
    return [_case(i, i % 2, sp, rng, phase) for i, sp in enumerate(splits)]


def _config(*extra: str) -> Config:
    return load_config(None, [
        "ablation.regions=[full, external-mask]", "ablation.strategies=[frozen]", "ablation.backbones=[resnet18]",
        "ablation.seeds=1", "ablation.n_boot=200", "ablation.saliency=false", "ablation.mask_quality_targets=[1.0]",
        f"classify.classes={json.dumps(CLASSES)}", "classify.weights=none", "classify.image_size=32",
        "classify.train.max_epochs=1", "classify.train.steps_per_epoch=2", "classify.train.batch_size=8",
        "ablation.attenuation=true", *extra])


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_ablation(_config(), _cohort(), tmp_path_factory.mktemp("baselines"), progress=False)


def test_external_and_attenuation_arms_have_cis_and_paired_tests(result: dict[str, Any]) -> None:
    names = [a["name"] for a in result["arms"]]
    assert names == ["full/frozen", "external-mask/frozen", "attenuation/youden", "attenuation/40HU",
                     "attenuation/liver-spleen"]
    for arm in result["arms"]:
        auc = arm["pooled"]["roc_auc"]
        assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    # the rule separates this cohort's fat from its HU; the literature's 40 HU is a cut-off, not a fit
    youden = next(a for a in result["arms"] if a["name"] == "attenuation/youden")
    assert youden["pooled"]["roc_auc"]["value"] > 0.9
    compared = {c["arm"] for c in result["comparisons"]}
    assert {"external-mask/frozen", "attenuation/youden", "attenuation/40HU"} <= compared
    assert all(0.0 <= c["mcnemar"]["pvalue"] <= 1.0 and "pvalue_holm" in c["auc_diff"] for c in result["comparisons"])
    assert {c["reference"] for c in result["comparisons"]} == {"full/frozen"}
    assert "2 arms × 1 seeds + 3 rule arms" in Path(result["report"]).read_text()
    assert any("attenuation/youden: liver_hu <" in n and "HU (youden, 12 training cases)" in n for n in result["notes"])


def test_the_rule_is_refused_on_enhanced_ct_and_external_arms_need_masks(tmp_path: Path) -> None:
    cohort = _cohort("portal-venous")
    cohort = [Stage1Case(c.row, CaseSlices(**{**c.slices.__dict__, "external": None}), c.seg_metrics, c.modality)
              for c in cohort]
    res = run_ablation(_config(), cohort, tmp_path, progress=False)
    assert [a["name"] for a in res["arms"]] == ["full/frozen"]
    assert any("external-mask arms skipped" in n for n in res["notes"])
    assert any("refused on portal-venous CT" in n for n in res["notes"])


def test_degraded_external_masks_reach_their_dice() -> None:
    cases = [c.slices for c in _cohort()[:4]]
    out = baselines.with_degraded_external([CaseSlices(**{**c.__dict__, "external": None}) for c in cases], 0.8)
    for c in out:
        ext, gt = c.external.numpy() > 0, c.gt.numpy() > 0
        assert abs(2 * (ext & gt).sum() / (ext.sum() + gt.sum()) - 0.8) < 0.05
    view = baselines.external_view(AblationSplit(out, [], [], np.array([])))
    assert torch.equal(view.train[0].mask, out[0].external) and view.train[0].prob.dtype == torch.float16
    assert baselines.degraded_spec("degraded:0.9") == 0.9 and baselines.degraded_spec("/data/ts") is None
    with pytest.raises(Exception, match="degraded:<dice>"):
        baselines.degraded_spec("degraded:1.5")

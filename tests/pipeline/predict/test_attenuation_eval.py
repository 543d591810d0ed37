"""evaluate's attenuation-rule arm: the literature's cut-offs beside the classifier, with CIs and paired tests."""

from __future__ import annotations

import numpy as np

from livercad.pipeline.predict.attenuation_eval import attenuation_metrics
from livercad.pipeline.predict.summary import cohort_metrics
from livercad.types import CaseResult


def _results(phase: str | None = "non-contrast") -> list[CaseResult]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(24):
        fat = i % 2 == 1
        hu = (30.0 if fat else 58.0) + float(rng.normal(0, 7))
        spleen = 50.0 + float(rng.normal(0, 3))
        p = float(np.clip(0.5 + (0.3 if fat else -0.3) + rng.normal(0, 0.25), 0.01, 0.99))
        out.append(CaseResult(f"c{i}", f"c{i}.nii.gz", true_label="steatosis" if fat else "normal",
                              probabilities={"normal": 1 - p, "steatosis": p}, modality="ct", liver_mean=hu,
                              liver_minus_spleen=hu - spleen, contrast_phase=phase, intensity_unit="HU"))
    return out


def test_rules_are_scored_with_cis_and_compared_with_the_classifier() -> None:
    m = attenuation_metrics(_results(), ["normal", "steatosis"], n_boot=200)
    assert m is not None and m["n"] == 24 and m["n_refused_enhanced"] == 0
    assert set(m["rules"]) == {"liver_hu < 40", "liver_minus_spleen_hu < -10"}
    rule = m["rules"]["liver_hu < 40"]
    auc = rule["report"]["roc_auc"]
    assert auc["value"] > 0.9 and auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    assert 0.0 <= rule["vs_classifier"]["mcnemar"]["pvalue"] <= 1.0
    assert rule["vs_classifier"]["auc_diff"]["method"] == "delong" and "pvalue" in rule["vs_classifier"]["auc_diff"]


def test_enhanced_ct_is_left_out_unless_forced_and_metrics_json_carries_it() -> None:
    assert attenuation_metrics(_results("portal-venous"), ["normal", "steatosis"], n_boot=200) is None
    forced = attenuation_metrics(_results("portal-venous"), ["normal", "steatosis"], force=True, n_boot=200)
    assert forced is not None and forced["n"] == 24
    unknown = attenuation_metrics(_results(None), ["normal", "cirrhosis"], n_boot=200)
    assert unknown is not None and unknown["n_phase_unknown"] == 24 and "vs_classifier" not in \
        unknown["rules"]["liver_hu < 40"]
    assert "attenuation" not in cohort_metrics(_results("portal-venous"), ["normal", "steatosis"], n_boot=200)
    enhanced = cohort_metrics(_results("portal-venous"), ["normal", "steatosis"], n_boot=200, attenuation_force=True)
    assert enhanced["attenuation"]["n"] == 24  # inference.attenuation_force / evaluate --attenuation-force
    metrics = cohort_metrics(_results(), ["normal", "steatosis"], n_boot=200)
    assert metrics["attenuation"]["n"] == 24 and metrics["liver_mean_hu"]["n"] == 24


def test_the_report_shows_the_rule_and_the_spleen(tmp_path) -> None:
    from livercad.report.pipeline_page import write_pipeline_report

    results = [CaseResult(**{**r.__dict__, "spleen_mean": 50.0, "spleen_volume_ml": 200.0}) for r in _results()]
    metrics = cohort_metrics(results, ["normal", "steatosis"], n_boot=200)
    html = write_pipeline_report(tmp_path / "r.html", results, metrics, ["normal", "steatosis"],
                                 {"bundle": "b", "stages": ["segment", "classify"]}).read_text()
    assert "CT attenuation rule" in html and "liver_hu &lt; 40 HU" in html and "spleen mL" in html

"""The self-contained ``report.html`` of a prediction run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livercad.report.html import json_block
from livercad.types import CaseResult


def _classification_section(page: Any, results: Sequence[CaseResult], metrics: dict[str, Any],
                            classes: Sequence[str]) -> None:
    from livercad.pipeline.predict.summary import labelled_arrays
    from livercad.report.plots import confusion_png, roc_png
    from livercad.report.tables import metric_rows

    cls = metrics.get("classification")
    if not cls:
        page.paragraph("No ground-truth labels among the inputs: classification metrics are not computed.")
        return
    page.heading("Classification")
    page.table(metric_rows({k: v for k, v in cls.items() if isinstance(v, dict) and "value" in v}),
               caption=f"Case-level metrics, bootstrap 95 % CI by patient (n = {cls.get('n_labelled')})")
    y, proba, _, _ = labelled_arrays(results, classes)
    curves = {}
    for k, name in enumerate(classes):
        if len(classes) == 2 and k == 0:
            continue
        yk = (y == k).astype(int)
        if 0 < yk.sum() < len(yk):
            curves[f"{name} vs rest" if len(classes) > 2 else name] = (yk.tolist(), proba[:, k].tolist())
    if curves:
        page.image(roc_png(curves, title="ROC"), caption="ROC curves (case level)")
    if "confusion_matrix" in cls:
        page.image(confusion_png(cls["confusion_matrix"], list(classes), title="Confusion matrix"),
                   caption="Rows: true class; columns: predicted class")
    strat = metrics.get("classification_by_mask_quality")
    if strat:
        page.details("Classification by segmentation quality (Dice)", json_block(strat))


def _segmentation_section(page: Any, results: Sequence[CaseResult], metrics: dict[str, Any]) -> None:
    from livercad.report.plots import histogram_png

    seg = metrics.get("segmentation")
    if not seg:
        page.paragraph("No ground-truth masks among the inputs: segmentation metrics are not computed.")
        return
    page.heading("Segmentation")
    rows = [{"metric": k, "mean": v.get("mean"), "median": v.get("median"), "sd": v.get("sd"),
             "95% CI of mean": f"[{v.get('ci_low', float('nan')):.3f}, {v.get('ci_high', float('nan')):.3f}]",
             "n": v.get("n")} for k, v in seg.items()]
    page.table(rows, caption="Per-case segmentation metrics on the original voxel grid")
    dices = [r.dice for r in results if r.ok and r.dice is not None]
    if dices:
        page.image(histogram_png(dices, title="Dice distribution", xlabel="Dice"), caption="Dice per case")


OUT_OF_DOMAIN_TEXT = ("The classifier was trained on synthetic phantom data only; its verdicts on real scans are not "
                      "validated.")
BANNER_STYLE = ("border:2px solid #b8860b;background:#fff6d5;color:#5a4500;padding:.7rem 1rem;margin:1rem 0;"
                "font-weight:600")


def _domain_section(page: Any, results: Sequence[CaseResult], run_info: dict[str, Any]) -> None:
    """The out-of-domain banner (when any verdict is flagged) and what each stage was trained on."""
    import html

    flagged = [r.case_id for r in results if r.verdict_status == "out-of-domain"]
    if flagged:
        page.raw(f'<div class="banner" role="alert" style="{BANNER_STYLE}">{html.escape(OUT_OF_DOMAIN_TEXT)} '
                 f"{len(flagged)} of {len(results)} cases are flagged out-of-domain in predictions.csv "
                 "(verdict_status).</div>")
    domain = run_info.get("domain", {})
    modality = run_info.get("modality", {})
    page.key_values({"segmentation trained on": domain.get("segment") or "unknown",
                     "classifier trained on": domain.get("classify") or "no classifier in this bundle",
                     "input images": ", ".join(domain.get("images") or []) or "—",
                     "segmenter modalities": ", ".join(modality.get("segmenter_trained_on") or []) or "—"},
                    caption="Training domains")


def _case_rows(results: Sequence[CaseResult], classes: Sequence[str]) -> list[dict[str, Any]]:
    """One row of the report's case table per case (clinical-file columns only when some case has them)."""
    rows = [{"case": r.case_id, "prediction": r.predicted_label, "verdict": r.verdict_status,
             **{f"p({c})": r.probabilities.get(c) for c in classes},
             "liver mL": r.liver_volume_ml, "liver cm²": r.liver_area_cm2, "liver mean": r.liver_mean,
             "liver SD": r.liver_sd, "unit": r.intensity_unit, "spleen mL": r.spleen_volume_ml,
             "spleen mean": r.spleen_mean, "liver − spleen": r.liver_minus_spleen, "masks": r.mask_source,
             "modality": r.modality,
             "modality from": r.modality_source, "input": r.input_format, "series": r.series_description,
             "phase": r.contrast_phase, "spacing known": r.spacing_known, "DICOM-SEG": _seg_cell(r),
             "image": r.image_domain, "true": r.true_label, "Dice": r.dice, "note": r.note, "error": r.error}
            for r in results]
    empty = [k for k in OPTIONAL_COLUMNS if all(row[k] in (None, "", True) for row in rows)]
    return [{k: v for k, v in row.items() if k not in empty} for row in rows]


#: Case-table columns left out when no case fills them (NIfTI-only runs look as before).
OPTIONAL_COLUMNS = ("liver cm²", "series", "phase", "spacing known", "DICOM-SEG", "note", "spleen mL", "spleen mean",
                    "liver − spleen")


def _attenuation_section(page: Any, att: dict[str, Any]) -> None:
    """The CT attenuation rule beside the classifier (metrics.json ``attenuation``)."""
    page.heading("CT attenuation rule")
    page.paragraph(f"{att['n']} labelled CT cases ({att['n_phase_unknown']} of unknown phase; "
                   f"{att['n_refused_enhanced']} contrast-enhanced left out). Positive: steatosis.")
    rows = []
    for name, rule in att["rules"].items():
        rep, vs = rule["report"], rule.get("vs_classifier", {})
        auc, acc = rep["roc_auc"], rep["accuracy"]
        rows.append({"rule": f"{name} HU", "AUC [95% CI]": f"{auc['value']:.3f} [{auc['ci_low']:.3f}, "
                     f"{auc['ci_high']:.3f}]", "accuracy [95% CI]": f"{acc['value']:.3f} [{acc['ci_low']:.3f}, "
                     f"{acc['ci_high']:.3f}]",
                     "McNemar p vs classifier": vs.get("mcnemar", {}).get("pvalue"),
                     "DeLong p vs classifier": vs.get("auc_diff", {}).get("pvalue")})
    page.table(rows)


def _seg_cell(result: CaseResult) -> str | None:
    """The DICOM-SEG file name of a case, or ``None``."""
    return Path(result.seg_path).name if result.seg_path else None


def write_pipeline_report(path: Path, results: Sequence[CaseResult], metrics: dict[str, Any],
                          classes: Sequence[str], run_info: dict[str, Any]) -> Path:
    """Write report.html: summary, domain banner, per-case table, metrics, plots, QC images, provenance."""
    from livercad.report.html import HtmlReport

    page = HtmlReport("livercad prediction report")
    n_ok = sum(r.ok for r in results)
    page.paragraph(f"{len(results)} cases: {n_ok} finished, {len(results) - n_ok} failed. "
                   f"Bundle: {run_info.get('bundle')} (stages: {', '.join(run_info.get('stages', []))}). "
                   f"Precision: {run_info.get('precision')}.")
    _domain_section(page, results, run_info)
    page.heading("Cases")
    page.table(_case_rows(results, classes))
    _segmentation_section(page, results, metrics)
    if classes:
        _classification_section(page, results, metrics, classes)
    else:
        page.paragraph("The bundle has no classifier (segmentation only): no verdicts.")
    if "attenuation" in metrics:
        _attenuation_section(page, metrics["attenuation"])
    qc = [r for r in results if r.ok][:12]
    if qc:
        page.heading("Quality control")
        for r in qc:
            png = Path(path).parent / "qc" / f"{r.case_id}.png"
            if png.is_file():
                page.image(png.read_bytes(), caption=f"{r.case_id}", width=320)
    page.heading("Provenance")
    page.details("run.json", json_block(run_info))
    return page.write(path)

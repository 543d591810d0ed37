"""The self-contained ``report.html`` of a prediction run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livercad.report.html import json_block
from livercad.types import CaseResult


def _classification_section(page: Any, results: Sequence[CaseResult], metrics: dict[str, Any],
                            classes: Sequence[str]) -> None:
    from livercad.pipeline.summary import labelled_arrays
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


def write_pipeline_report(path: Path, results: Sequence[CaseResult], metrics: dict[str, Any],
                          classes: Sequence[str], run_info: dict[str, Any]) -> Path:
    """Write report.html: summary, per-case table, metrics, plots, QC images, provenance."""
    from livercad.report.html import HtmlReport

    page = HtmlReport("livercad prediction report")
    n_ok = sum(r.ok for r in results)
    page.paragraph(f"{len(results)} cases: {n_ok} finished, {len(results) - n_ok} failed. "
                   f"Bundle: {run_info.get('bundle')}. Precision: {run_info.get('precision')}.")
    rows = [{"case": r.case_id, "prediction": r.predicted_label,
             **{f"p({c})": r.probabilities.get(c) for c in classes},
             "liver mL": r.liver_volume_ml, "true": r.true_label, "Dice": r.dice, "error": r.error}
            for r in results]
    page.heading("Cases")
    page.table(rows)
    _segmentation_section(page, results, metrics)
    _classification_section(page, results, metrics, classes)
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


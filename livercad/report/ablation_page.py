"""Outputs of the ablation study: ``ablation.json``, ``ablation.csv`` and the self-contained ``ablation.html``.

``ablation.json`` holds everything needed to recompute every number: per-case test labels, patient ids,
the seed-averaged and per-seed class probabilities of every arm, the tests against the reference, the
mask-quality rows, the saliency fractions, the weights provenance and seeds of every arm, the config
and the timings. NaN is written as ``null``.

``ablation.csv``: one row per arm × seed (``seed`` = the seed) and one per arm (``seed`` = ``pooled``,
the seed-averaged probabilities, with 95 % CIs and the p-values against the reference).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from livercad.io.atomic import atomic_write_text
from livercad.report.html import HtmlReport, json_block
from livercad.report.tables import csv_text, fmt_ci, fmt_p

logger = logging.getLogger(__name__)

_MAIN = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "roc_auc", "brier")


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy to lists/numbers, NaN/inf to None, pydantic models to dicts, Paths to str.

    Example:
        >>> jsonable({"a": np.array([1.0, np.nan]), "b": (np.int64(2),)})
        {'a': [1.0, None], 'b': [2]}
    """
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _comparison_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["arm"]: c for c in result["comparisons"]}


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One short row per arm: AUC with CI and the DeLong p-value vs the reference (``'ref'`` for it)."""
    comps, rows = _comparison_of(result), []
    for a in result["arms"]:
        auc, c = a["pooled"]["roc_auc"], comps.get(a["name"])
        p = "ref" if c is None else fmt_p(c["auc_diff"]["pvalue"])
        rows.append({"arm": a["name"], "auc": auc["value"], "auc_ci_low": auc["ci_low"],
                     "auc_ci_high": auc["ci_high"], "p_delong": p,
                     "p_delong_holm": "ref" if c is None else fmt_p(c["auc_diff"]["pvalue_holm"])})
    return rows


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``ablation.csv``: every arm × seed, then every arm pooled (CIs, p-values, attention)."""
    comps, rows = _comparison_of(result), []
    for a in result["arms"]:
        base = {"arm": a["name"], "region": a["region"], "strategy": a["strategy"], "backbone": a["backbone"]}
        for ps, w, sec in zip(a["per_seed"], a["weights"], a["train_seconds"], strict=True):
            src = (w or {}).get("source")
            rows.append({**base, **ps, "n_test": result["n"]["test"], "weights": src, "train_seconds": sec})
    for a in result["arms"]:
        row: dict[str, Any] = {"arm": a["name"], "region": a["region"], "strategy": a["strategy"],
                               "backbone": a["backbone"], "seed": "pooled", "n_test": result["n"]["test"]}
        for k in _MAIN:
            e = a["pooled"][k]
            row |= {k: e["value"], f"{k}_ci_low": e["ci_low"], f"{k}_ci_high": e["ci_high"],
                    f"{k}_seed_mean": a["mean_sd"][k]["mean"], f"{k}_seed_sd": a["mean_sd"][k]["sd"]}
        c = comps.get(a["name"])
        if c is not None:
            row |= {"reference": c["reference"], "auc_diff": c["auc_diff"]["diff"],
                    "auc_diff_ci_low": c["auc_diff"]["ci_low"], "auc_diff_ci_high": c["auc_diff"]["ci_high"],
                    "p_auc": c["auc_diff"]["pvalue"], "p_auc_holm": c["auc_diff"]["pvalue_holm"],
                    "p_mcnemar_exact": c["mcnemar"]["pvalue"], "p_mcnemar_holm": c["mcnemar"]["pvalue_holm"],
                    "p_chi2": c["chi2"]["pvalue"], "p_chi2_holm": c["chi2"]["pvalue_holm"]}
        sal = result["saliency"].get(a["name"])
        if sal:
            f = sal["fraction"]
            row |= {"inside_liver": f["value"], "inside_liver_ci_low": f["ci_low"],
                    "inside_liver_ci_high": f["ci_high"]}
        rows.append(row)
    return rows


def _table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    comps, rows = _comparison_of(result), []
    for a in result["arms"]:
        p, c = a["pooled"], comps.get(a["name"])
        sal = result["saliency"].get(a["name"], {}).get("fraction")
        ms = a["mean_sd"]["roc_auc"]
        row = {"arm": a["name"], "AUC [95% CI]": fmt_ci(p["roc_auc"]["value"], p["roc_auc"]["ci_low"],
                                                        p["roc_auc"]["ci_high"]),
               "AUC seeds mean ± SD": f"{ms['mean']:.3f} ± {ms['sd']:.3f}" if ms["sd"] == ms["sd"] else ms["mean"],
               "accuracy [95% CI]": fmt_ci(p["accuracy"]["value"], p["accuracy"]["ci_low"], p["accuracy"]["ci_high"]),
               "sensitivity": p["sensitivity"]["value"], "specificity": p["specificity"]["value"]}
        if c is None:
            row |= {"ΔAUC vs ref [95% CI]": "reference", "p AUC (Holm)": "ref", "p McNemar (Holm)": "ref",
                    "p χ² (Holm)": "ref"}
        else:
            d = c["auc_diff"]
            row |= {"ΔAUC vs ref [95% CI]": fmt_ci(d["diff"], d["ci_low"], d["ci_high"]),
                    "p AUC (Holm)": f"{fmt_p(d['pvalue'])} ({fmt_p(d['pvalue_holm'])})",
                    "p McNemar (Holm)": f"{fmt_p(c['mcnemar']['pvalue'])} ({fmt_p(c['mcnemar']['pvalue_holm'])})",
                    "p χ² (Holm)": f"{fmt_p(c['chi2']['pvalue'])} ({fmt_p(c['chi2']['pvalue_holm'])})"}
        row["inside-liver attention [95% CI] (n maps)"] = (
            f"{fmt_ci(sal['value'], sal['ci_low'], sal['ci_high'])} (n={sal['n']})" if sal else None)
        rows.append(row)
    return rows


def _plots(page: HtmlReport, result: dict[str, Any]) -> None:
    from livercad.report.plots import forest_png, roc_png

    y, classes = np.asarray(result["cases"]["y_true"]), result["classes"]
    method = result["comparisons"][0]["auc_diff"]["method"] if result["comparisons"] else "delong"
    forest = [{"name": c["arm"], **{k: c["auc_diff"][k] for k in ("diff", "ci_low", "ci_high")},
               "pvalue": c["auc_diff"]["pvalue"]} for c in result["comparisons"]]
    if forest:
        page.image(forest_png(forest, title=f"AUC difference vs {result['reference']} ({method})",
                              xlabel=f"ΔAUC vs {result['reference']} (95% CI)"),
                   caption="Forest plot: AUC of each arm minus the reference arm with the same strategy/backbone; "
                           "raw p-values (Holm-adjusted ones in the table).")
    pos = 1 if len(classes) == 2 else len(classes) - 1
    curves = {a["name"]: ((y == pos).astype(int), np.asarray(a["proba_test"])[:, pos]) for a in result["arms"]}
    page.image(roc_png(curves, title=f"Test ROC, seed-averaged ({classes[pos]} vs rest)"),
               caption="ROC curves of every arm on the test split (seed-averaged probabilities).")


def _quality_section(page: HtmlReport, q: dict[str, Any]) -> None:
    from livercad.report.plots import curve_png

    page.heading("Mask-quality curve")
    page.paragraph(q.get("note", ""))
    if not q.get("rows"):
        return
    rows = q["rows"]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        gt = [r for r in mine if r["op"] == "gt"]
        series = {}
        for op in dict.fromkeys(r["op"] for r in mine if r["op"] not in ("gt", "stage-1")):
            pts = gt + [r for r in mine if r["op"] == op]
            series[op] = ([r["dice_mean"] for r in pts], [r["auc"] for r in pts],
                          [r["auc_ci_low"] for r in pts], [r["auc_ci_high"] for r in pts])
        s1 = [r for r in mine if r["op"] == "stage-1"]
        if s1:
            series["stage-1 masks"] = ([s1[0]["dice_mean"]], [s1[0]["auc"]], [s1[0]["auc_ci_low"]],
                                       [s1[0]["auc_ci_high"]])
        page.image(curve_png(series, title=f"{arm}: test AUC vs mask Dice", xlabel="mean Dice of the masks used",
                             ylabel="ROC AUC (95% DeLong CI)"), caption=f"{arm}: AUC against achieved mean Dice.")
    page.table([{k: r[k] for k in ("arm", "op", "target", "dice_mean", "dice_sd", "n_base_gt", "auc")} |
                {"AUC [95% CI]": fmt_ci(r["auc"], r["auc_ci_low"], r["auc_ci_high"])} for r in rows],
               caption="Degraded masks: target and achieved Dice (n_base_gt: cases degraded from the GT mask "
                       "because the prediction was already below the target)")


def _strata_section(page: HtmlReport, result: dict[str, Any]) -> None:
    rows = []
    for a in result["arms"]:
        s = a.get("dice_strata")
        if not s:
            continue
        for name in ("good", "poor"):
            r = s.get(name)
            auc = r["roc_auc"] if r else None
            acc = r["accuracy"] if r else None
            rows.append({"arm": a["name"], "stratum": f"{name} (Dice {'≥' if name == 'good' else '<'} "
                                                      f"{s['threshold']:.3f})", "n": s[f"n_{name}"],
                         "accuracy [95% CI]": fmt_ci(acc["value"], acc["ci_low"], acc["ci_high"]) if acc else None,
                         "AUC [95% CI]": fmt_ci(auc["value"], auc["ci_low"], auc["ci_high"]) if auc else None})
    if rows:
        page.heading("Test cases stratified by their stage-1 Dice")
        page.paragraph("Split at the median stage-1 Dice (original grid) of the test cases.")
        page.table(rows)


def _saliency_section(page: HtmlReport, result: dict[str, Any], maps: dict[str, list[Any]]) -> None:
    from livercad.report.overlay import gallery_png, radiological
    from livercad.report.plots import bar_ci_png

    sal = result["saliency"]
    if not sal:
        return
    page.heading("Saliency: where does each arm look?")
    method = next((v.get("method", "gradcam") for v in sal.values()), "gradcam")
    what = ("gradient × input (MONAI VanillaGrad times the input's difference from its blank background level; "
            "pixels equal to the background get no attribution)" if method == "gradient-input" else
            "Grad-CAM (MONAI; the deepest stage with a map of at least 7 px). Caveat: Grad-CAM also fires on "
            "constant background, so masked arms get mass outside the liver that reflects the network's response "
            "to blank input, not anatomy")
    page.paragraph(f"Saliency method: {what}. Computed for each arm's seed-0 classifier on the largest-liver "
                   "slice of each case, mapped back to the model-space slice; inside-liver attention = saliency "
                   "mass inside the ground-truth liver / total mass (mean over cases, patient-bootstrap 95% CI; "
                   "n maps = cases whose map is not all zero). Crop arms: the map covers the liver box only; full "
                   "and crop arms can use real structures outside the liver.")
    names = list(sal)
    f = [sal[n]["fraction"] for n in names]
    page.image(bar_ci_png(names, [x["value"] for x in f], [x["ci_low"] for x in f], [x["ci_high"] for x in f],
                          title="Inside-liver attention fraction", ylabel=f"share of {method} mass inside the liver"))
    items = [(radiological(m.image), None if m.gt is None else radiological(m.gt), radiological(m.heat),
              f"{n}: {m.case_id} ({m.fraction:.2f})") for n in names for m in maps.get(n, [])[:4]]
    if items:
        per_arm = max(1, min(4, max(len(maps.get(n, [])) for n in names)))
        page.image(gallery_png(items, ncols=per_arm),
                   caption="Grad-CAM overlays (red outline: ground-truth liver); one row per arm.")


def _shortcut_section(page: HtmlReport, sc: dict[str, Any]) -> None:
    if not sc["rows"]:
        return
    page.heading("Shortcut study: validation vs test" if sc["enabled"] else "Validation vs test")
    if sc["enabled"]:
        page.paragraph(f"The cohort's site artifact outside the liver is correlated with the label in train/val "
                       f"and not in test; arms whose accuracy drops by ≥ {sc['threshold']:.2f} from val to test "
                       "learned the artifact (seed-averaged verdicts on both splits).")
    else:
        page.paragraph("Validation = each seed's best-epoch validation score (mean over seeds; optimistic, since "
                       "it selected the epoch); test = mean over seeds of the single-model test scores.")
    page.table(sc["rows"])


def _provenance(page: HtmlReport, result: dict[str, Any]) -> None:
    page.heading("Provenance, seeds and timing")
    page.table([{"arm": a["name"], "seeds": ", ".join(str(s) for s in a["seeds"]),
                 "weights": ", ".join(sorted({str((w or {}).get("source")) for w in a["weights"]})),
                 "best epochs": ", ".join(str(e) for e in a["best_epoch"]),
                 "train s (per seed)": ", ".join(f"{s:.1f}" for s in a["train_seconds"])} for a in result["arms"]])
    page.key_values({k: f"{v:.1f} s" for k, v in result["timing"].items()}, caption="Timing")
    page.details("weights provenance (every arm and seed)",
                 json_block({a["name"]: a["weights"] for a in jsonable(result["arms"])}))
    page.details("config", json_block(jsonable(result["config"])))


def build_page(result: dict[str, Any]) -> HtmlReport:
    """The ablation report page of a :func:`~livercad.pipeline.study.ablation.run_ablation` result."""
    page = HtmlReport("Segmentation-impact ablation")
    n, seeds = result["n"], len(result["arms"][0]["seeds"]) if result["arms"] else 0
    rules = sum(a.get("strategy") == "rule" for a in result["arms"])
    arms = f"{len(result['arms']) - rules} arms × {seeds} seeds" + (f" + {rules} rule arms" if rules else "")
    page.paragraph(f"{arms}; patient-level split train {n['train']} / "
                   f"val {n['val']} / test {n['test']} cases; classes {', '.join(result['classes'])}; reference "
                   f"region '{result['reference']}'. Pooled = seed-averaged probabilities per case (one verdict "
                   "per case, so the paired tests stay valid); CIs by patient bootstrap; p-values raw (Holm).")
    for note in result["notes"]:
        page.paragraph(f"Note: {note}")
    page.table(_table_rows(result), caption="Arms on the test split")
    _plots(page, result)
    page.table([{"arm": a["name"], **p} for a in result["arms"] for p in a["per_seed"]],
               caption="Per-seed test metrics")
    _quality_section(page, result["mask_quality"])
    _strata_section(page, result)
    _saliency_section(page, result, {k: v.get("maps", []) for k, v in result["saliency"].items()})
    _shortcut_section(page, result["shortcut"])
    _provenance(page, result)
    return page


def write_ablation_outputs(result: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``ablation.json``, ``ablation.csv`` and ``ablation.html`` into ``out_dir`` (atomically).

    Returns:
        ``{"report", "csv", "json"}`` paths (str) and ``summary_rows``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "saliency"}
    data["saliency"] = {k: {kk: vv for kk, vv in v.items() if kk != "maps"} for k, v in result["saliency"].items()}
    j = atomic_write_text(out / "ablation.json", json.dumps(jsonable(data), indent=1, allow_nan=False))
    c = atomic_write_text(out / "ablation.csv", csv_text(csv_rows(result)))
    h = build_page(result).write(out / "ablation.html")
    return {"report": str(h), "csv": str(c), "json": str(j), "summary_rows": summary_rows(result)}


__all__ = ["build_page", "csv_rows", "jsonable", "summary_rows", "write_ablation_outputs"]

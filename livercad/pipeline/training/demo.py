"""``livercad demo``: the whole study on the embedded phantom, end to end.

DIR/data/      phantom cohort + manifest (split by patient)
DIR/model/     trained bundle (usable as ``--model``)
DIR/predict/   the test split in the ``predict`` output layout
DIR/ablation/  the segmentation-impact ablation (when enabled)
DIR/report.html
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from livercad.config import Config, load_config

log = logging.getLogger(__name__)


#: The demo trains from random init, offline: weights a demo config leaves unset are these, not ImageNet.
DEMO_WEIGHTS = ("segment.model.encoder_weights=none", "classify.weights=none")


def demo_config(fast: bool, config: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The demo preset (``demo`` or ``demo-fast``), or a user config, with overrides.

    Weights are ``none`` (:data:`DEMO_WEIGHTS`) unless the config or an override sets them: the presets say so,
    and a user config that names no weights does not fall back on the package default (ImageNet).

    Example:
        >>> cfg = demo_config(True, "segment", ["classify.weights=my.pth"])  # segment.yaml names no classify weights
        >>> cfg.segment.model.encoder_weights, cfg.classify.weights, demo_config(True, "segment").classify.weights
        ('none', 'my.pth', 'none')
    """
    path = config or ("demo-fast" if fast else "demo")
    cfg = load_config(path, overrides or [])
    given = (cfg.segment.model.model_fields_set, cfg.classify.model_fields_set)
    unset = [o for o, fields in zip(DEMO_WEIGHTS, given, strict=True) if o.split("=")[0].split(".")[-1] not in fields]
    return load_config(path, [*unset, *(overrides or [])]) if unset else cfg


def _summary_table(metrics: dict[str, Any], ablation: dict[str, Any] | None) -> str:
    lines = ["metric                      value   95% CI"]
    seg = metrics.get("segmentation", {}).get("dice")
    if seg:
        lines.append(f"test Dice (mean)            {seg['mean']:.3f}   [{seg['ci_low']:.3f}, {seg['ci_high']:.3f}]")
    for key in ("accuracy", "balanced_accuracy", "roc_auc"):
        v = metrics.get("classification", {}).get(key)
        if isinstance(v, dict) and v.get("value") is not None:
            lines.append(f"test {key:<23}{v['value']:.3f}   [{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
    for row in (ablation or {}).get("summary_rows", []):
        lines.append(f"ablation {row['arm']:<19} AUC {row['auc']:.3f}  p vs ref {row.get('p_delong', 'n/a')}")
    return "\n".join(lines)


def run_demo(out_dir: str | Path, *, fast: bool = False, config: str | Path | None = None,
             overrides: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Generate data, train both stages, predict the test split, run the ablation, write the report.

    Returns:
        ``{"report": path, "table": text, "metrics": test metrics, "timing": seconds per step}``.
    """
    from livercad.pipeline.predict.run import run_pipeline
    from livercad.pipeline.training.orchestrate import train_pipeline
    from livercad.pipeline.training.preflight import ensure_run_weights

    out = Path(out_dir)
    cfg = demo_config(fast, config, overrides)
    ensure_run_weights(cfg, ablation=cfg.ablation.seeds > 0 and bool(cfg.ablation.regions))  # stages: train_pipeline
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    trained = train_pipeline(cfg, out, progress=progress)
    timing.update(trained.timing)
    manifest = out / "data" / "manifest.csv" if cfg.data.manifest is None else cfg.data.manifest
    split_manifest = out / "data" / "manifest_split.csv"
    from livercad.io.manifest import write_manifest

    write_manifest(trained.rows, split_manifest)
    t = time.perf_counter()
    pred = run_pipeline(split_manifest, out / "predict", model=trained.bundle, split="test",
                        progress=progress)
    timing["predict_test_s"] = time.perf_counter() - t
    ablation = None
    if cfg.ablation.seeds > 0 and cfg.ablation.regions:
        t = time.perf_counter()
        from livercad.pipeline.study.ablation import run_ablation

        ablation = run_ablation(cfg, trained.stage1, out / "ablation", progress=progress)
        timing["ablation_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    report = _write_demo_report(out, cfg, pred, ablation, timing, manifest)
    return {"report": report, "table": _summary_table(pred.metrics, ablation), "metrics": pred.metrics,
            "timing": timing}


def _write_demo_report(out: Path, cfg: Config, pred: Any, ablation: dict[str, Any] | None,
                       timing: dict[str, float], manifest: Path) -> Path:
    from livercad.config import config_to_dict
    from livercad.report.html import HtmlReport, json_block

    page = HtmlReport("livercad demo report")
    page.paragraph(f"Phantom cohort: {manifest}. Model bundle: {out / 'model'}. "
                   f"Total time {timing.get('total_s', 0):.0f} s on this machine.")
    page.key_values({k: f"{v:.1f} s" for k, v in timing.items()}, caption="Timing")
    page.heading("Test split predictions")
    predict_report = out / "predict" / "report.html"
    if predict_report.is_file():
        page.raw(_body_of(predict_report.read_text(encoding="utf-8")))
    if ablation and Path(ablation.get("report", "")).is_file():
        page.heading("Segmentation-impact ablation")
        page.raw(_body_of(Path(ablation["report"]).read_text(encoding="utf-8")))
    page.details("config", json_block(config_to_dict(cfg)))
    return page.write(out / "report.html")


def _body_of(html_text: str) -> str:
    start = html_text.find("<body>")
    end = html_text.rfind("</body>")
    return html_text[start + 6:end] if start >= 0 and end > start else html_text

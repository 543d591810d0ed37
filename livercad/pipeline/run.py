"""``run_pipeline``: NIfTI inputs in; masks, verdicts, metrics and a report out.

Example:
    >>> from livercad import run_pipeline                                     # doctest: +SKIP
    >>> res = run_pipeline("scans/", "out/", model="demo_out/model")         # doctest: +SKIP
    >>> res.cases[0].predicted_label, res.metrics["n_ok"]                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from livercad.config import Config, InferenceConfig, config_to_dict, load_config
from livercad.io.atomic import atomic_write_text
from livercad.pipeline.bundle import bundle_checksums, load_bundle, versions
from livercad.pipeline.inputs import CaseInput, discover_inputs
from livercad.pipeline.outputs import RunFolder, failure_rows, prediction_rows, write_csv
from livercad.pipeline.progress import Progress
from livercad.types import CaseResult

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What a run produced: one record per case (input order) and the cohort metrics."""

    output_dir: Path
    cases: list[CaseResult]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[CaseResult]:
        """Cases that failed, with their reasons."""
        return [c for c in self.cases if not c.ok]

    @property
    def all_ok(self) -> bool:
        """True when every case finished."""
        return not self.failures


def _inference_config(bundle_cfg: Config, config: Config | str | Path | None) -> InferenceConfig:
    if config is None:
        return bundle_cfg.inference
    cfg = config if isinstance(config, Config) else load_config(config)
    return cfg.inference


def _run_local(todo: Sequence[CaseInput], predictor_args: tuple[Any, InferenceConfig], folder: RunFolder,
               bar: Progress) -> tuple[list[CaseResult], dict[str, Any]]:
    from livercad.pipeline.predictor import Predictor

    predictor = Predictor(*predictor_args)  # models load once for the whole batch
    out = []
    for case in todo:
        result = predictor.process(case, folder)
        folder.write_record(result)
        out.append(result)
        bar.advance(case.case_id, "done" if result.ok else f"FAILED: {result.error}")
    return out, predictor.used


def run_pipeline(inputs: str | Path | Sequence[str | Path], output_dir: str | Path, *, model: str | Path,
                 config: Config | str | Path | None = None, resume: bool = False, progress: bool = True,
                 split: str | None = None, engine: str | None = None,
                 address: str | None = None) -> PipelineResult:
    """Segment and classify every input case with a trained bundle.

    Args:
        inputs: a folder of NIfTI files, one file, a list of files, or a manifest CSV (then ground-truth
            masks and labels are used for evaluation).
        output_dir: where masks/, qc/, predictions.csv, failures.csv, metrics.json, run.json and
            report.html go.
        model: a bundle directory (``livercad train pipeline`` or ``livercad demo`` make one).
        config: optional config (object or YAML) whose ``inference`` section overrides the bundle's.
        resume: skip cases whose record shows they already finished in ``output_dir``.
        progress: progress bar on a terminal / log lines otherwise.
        split: with a manifest, only rows of this split.
        engine: ``local`` (default) or ``ray``; ``address``: Ray cluster address.

    Returns:
        A :class:`PipelineResult`.
    """
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    bundle = load_bundle(model)
    inference = _inference_config(bundle.config, config)
    engine = engine or inference.engine
    cases, problems = discover_inputs(inputs, split=split)
    with RunFolder(output_dir) as folder:
        done: dict[str, CaseResult] = {}
        for p in problems:
            r = CaseResult(p.case_id, p.image, error=p.reason)
            folder.write_record(r)
            done[p.case_id] = r
        todo = []
        for c in cases:
            prev = folder.read_record(c.case_id) if resume else None
            if prev is not None and prev.ok and prev.input_path == str(c.image):
                done[c.case_id] = prev
            else:
                todo.append(c)
        log.info("%d cases: %d to run, %d already done, %d input problems", len(cases) + len(problems),
                 len(todo), len(cases) - len(todo), len(problems))
        with Progress(len(todo), enabled=progress) as bar:
            if engine == "ray":
                from livercad.pipeline.engine_ray import run_ray

                new, used = run_ray(todo, (bundle, inference), folder, bar, address=address)
            else:
                new, used = _run_local(todo, (bundle, inference), folder, bar)
        done.update({r.case_id: r for r in new})
        order = [c.case_id for c in cases] + [p.case_id for p in problems if p.case_id not in
                                               {c.case_id for c in cases}]
        results = [done[cid] for cid in dict.fromkeys(order) if cid in done]
        metrics = _write_outputs(folder, results, bundle, inference, used=used,
                                 timing={"started": started, "seconds": round(time.perf_counter() - t0, 3),
                                         "cases_run": len(new), "cases_resumed": len(cases) - len(todo),
                                         "engine": engine})
    return PipelineResult(Path(output_dir), results, metrics)


def _write_outputs(folder: RunFolder, results: list[CaseResult], bundle: Any, inference: InferenceConfig,
                   *, used: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    from livercad.pipeline.summary import cohort_metrics

    classes = bundle.classes
    pred_cols = (["case_id", "predicted_label"] + [f"prob_{c}" for c in classes]
                 + ["liver_volume_ml", "true_label", "dice", "mask_path", "input"])
    write_csv(folder.root / "predictions.csv", prediction_rows(results, classes), pred_cols)
    write_csv(folder.root / "failures.csv", failure_rows(results), ["case_id", "input", "reason"])
    metrics = cohort_metrics(results, classes, seed=bundle.config.seed)
    atomic_write_text(folder.root / "metrics.json", json.dumps(metrics, indent=2, default=_json_default))
    run_info = {
        "livercad_run": "predict",
        "versions": versions(),
        "bundle": str(Path(bundle.path).resolve()),
        "bundle_sha256": bundle_checksums(bundle),
        "weights": bundle.meta.get("weights", {}),
        "seed": bundle.config.seed,
        "precision": used.get("precision", inference.precision),
        "backend": used.get("backend", {"requested": inference.backend}),
        "inference": inference.model_dump(mode="json"),
        "config": config_to_dict(bundle.config),
        "n_cases": len(results),
        "n_ok": sum(r.ok for r in results),
        "n_failed": sum(not r.ok for r in results),
        "timing": {**timing, "mean_case_seconds": _mean([r.seconds for r in results if r.ok])},
    }
    atomic_write_text(folder.root / "run.json", json.dumps(run_info, indent=2, default=_json_default))
    if inference.report:
        from livercad.report.pipeline_page import write_pipeline_report

        write_pipeline_report(folder.root / "report.html", results, metrics, classes, run_info)
    return metrics


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 4) if vals else None


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)

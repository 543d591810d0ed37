"""Stage-2 acceptance run: classifier on stage-1 *predicted* masks, test ROC AUC next to the severity ceiling.

Generates the config's CT phantom cohort with all three classes, trains stage 1 once with the config's budget,
runs it over every case (the classifier sees predicted masks, as at inference), then for each binary task
(cirrhosis vs normal, steatosis vs normal) trains stage 2 with the config's ``classify`` section and budget
and reports on the test split: ROC AUC with a patient-bootstrap 95 % CI, accuracy, sensitivity, specificity,
and the phantom's severity ceiling AUC (the AUC of the true disease score on the same test cases). Prints
one JSON object and writes it to ``benchmarks/results/``.

    python benchmarks/accept_stage2.py                     # configs/demo.yaml, n = 90
    python benchmarks/accept_stage2.py --config classify --n 120
    python benchmarks/accept_stage2.py --seeds 3            # stage 2 three times per task (seed spread)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import cpu_name, finish

from livercad.classify.data import resolve_labels
from livercad.classify.fit import train_classifier
from livercad.classify.infer import predict_cases
from livercad.config import load_config
from livercad.metrics.classification import classification_report
from livercad.metrics.segmentation import summarize
from livercad.phantom import severity_ceiling_auc
from livercad.pipeline.training.orchestrate import train_stage1

METRICS = ("roc_auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "youden_j")


def _task(stage1: list[Any], cfg: Any, positive: str, work: Path, seed: int) -> dict[str, Any]:
    """Train and evaluate one binary task (``positive`` vs normal) on the shared stage-1 cache.

    ``seed``: the stage-2 seed (model init, sampling, augmentation).
    """
    classes = ["normal", positive]
    ccfg = cfg.classify.model_copy(update={"classes": classes})
    named = {s.row.case_id: dataclasses.replace(s.slices, label_name=s.row.label) for s in stage1}
    split = {s.row.case_id: s.row.split for s in stage1}
    cases, _ = resolve_labels(list(named.values()), classes)
    train = [c for c in cases if split[c.case_id] == "train"]
    val = [c for c in cases if split[c.case_id] == "val"]
    test = [c for c in cases if split[c.case_id] == "test"]
    cpu0, t0 = time.process_time(), time.perf_counter()
    trained = train_classifier(train, val, ccfg, work / f"{positive}_seed{seed}", seed=seed, progress=False)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    proba = predict_cases(trained.classifier, test, batch_size=cfg.inference.batch_size)
    y = [c.label for c in test]
    rep = classification_report(y, proba, class_names=classes, groups=[c.patient_id for c in test], positive=1)
    test_rows = [s.row for s in stage1 if s.row.split == "test" and s.row.label in classes]
    return {
        "seed": seed, "n_train": len(train), "n_val": len(val), "n_test": len(test),
        "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu_s, 1),
        "epochs": len(trained.history), "best_epoch": trained.meta.get("best_epoch"),
        "n_train_slices": trained.meta.get("n_train_slices"),
        "test": {m: rep[m] for m in METRICS if m in rep},
        "severity_ceiling_auc_test": severity_ceiling_auc(test_rows, positive),
    }


def _seeded(stage1: list[Any], cfg: Any, positive: str, work: Path, seeds: int) -> dict[str, Any]:
    """:func:`_task` with stage-2 seeds ``cfg.seed`` ... ``cfg.seed + seeds - 1`` on the same stage-1 output.

    The first seed's result is the task's result (as with one seed); with more, ``seeds`` lists each
    seed's test AUC and CI, and ``roc_auc_mean``/``roc_auc_min``/``roc_auc_max`` summarise them.
    """
    runs = [_task(stage1, cfg, positive, work, cfg.seed + i) for i in range(seeds)]
    out = dict(runs[0])
    if seeds > 1:
        aucs = [r["test"]["roc_auc"]["value"] for r in runs]
        out["seeds"] = [{"seed": r["seed"], "train_s": r["train_s"], "epochs": r["epochs"],
                         "roc_auc": r["test"]["roc_auc"]} for r in runs]
        out.update(roc_auc_mean=round(sum(aucs) / len(aucs), 4), roc_auc_min=min(aucs), roc_auc_max=max(aucs))
    return out


def main() -> None:
    """Parse the command line, run stage 1 once and each selected binary task, print and save the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo", help="config file or preset name (default: demo)")
    ap.add_argument("--n", type=int, default=90, help="phantom patients (all three classes; default 90)")
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value (repeatable)")
    ap.add_argument("--work", help="work folder (default: a temporary folder, removed)")
    ap.add_argument("--no-save", action="store_true", help="print only, do not write benchmarks/results/")
    ap.add_argument("--seeds", type=int, default=1,
                    help="stage-2 seeds per task on the one stage-1 run (default 1; the first is the reported run)")
    ap.add_argument("--tasks", default="cirrhosis,steatosis",
                    help="comma-separated positive classes, each against normal (default: cirrhosis,steatosis)")
    ap.add_argument("--tag", default="", help="suffix of the result file name (accept_stage2_<tag>)")
    args = ap.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - {"cirrhosis", "steatosis"}:
        ap.error(f"--tasks: choose from cirrhosis, steatosis; got {args.tasks!r}")
    overrides = [f"data.phantom.n={args.n}", "data.phantom.modality=ct", "preprocess.modality=ct",
                 "data.phantom.classes=[normal,steatosis,cirrhosis]",
                 "classify.classes=[normal,steatosis,cirrhosis]", *args.set]
    cfg = load_config(args.config, overrides)
    result: dict[str, Any] = {
        "benchmark": "accept_stage2", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "config": args.config, "overrides": overrides,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "classify": {"backbone": cfg.classify.backbone, "weights": cfg.classify.weights,
                     "strategy": cfg.classify.strategy, "region": cfg.classify.region,
                     "image_size": cfg.classify.image_size, "augment": cfg.classify.augment,
                     "budget_minutes": cfg.classify.train.max_minutes},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        t0 = time.perf_counter()
        s1 = train_stage1(cfg, root, progress=False)
        stage1 = s1.stage1
        result["stage1"] = {"timing_s": {k: round(v, 1) for k, v in s1.timing.items()},
                            "seconds": round(time.perf_counter() - t0, 1),
                            "test_dice": summarize([s.seg_metrics["dice"] for s in stage1
                                                    if s.row.split == "test" and s.seg_metrics])}
        result["tasks"] = {pos: _seeded(stage1, cfg, pos, root / "classify", max(1, args.seeds))
                           for pos in tasks}
    finish(result, "accept_stage2" + (f"_{args.tag}" if args.tag else ""), save=not args.no_save)


if __name__ == "__main__":
    main()

"""Stage-1 acceptance run: train the segmenter with a config's budget, report test Dice on the original grid.

For each modality asked (default CT and MR-T2) this script generates the config's phantom cohort in that
modality, trains stage 1 with the config's wall-clock budget (``segment.train.max_minutes``), predicts every
test case with :func:`livercad.segment.infer.segment_volume` (masks in the input's own grid, whatever its
orientation) and prints one JSON object: per modality the training seconds, epochs/steps run, mean/min test
Dice with a bootstrap 95 % CI, HD95 and the machine. The JSON is also written to ``benchmarks/results/``.

    python benchmarks/accept_stage1.py                      # configs/segment.yaml, ct + mr-t2
    python benchmarks/accept_stage1.py --modality ct --config demo
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import cpu_name, finish

from livercad.config import load_config
from livercad.io.nifti import load_mask, load_volume
from livercad.metrics.segmentation import segmentation_metrics, summarize
from livercad.pipeline.training.orchestrate import cohort_rows, load_stage1
from livercad.segment.fit import train_segmenter
from livercad.segment.infer import segment_volume


def run_modality(config: str, modality: str, work: Path) -> dict[str, Any]:
    """Train and evaluate stage 1 for one modality; returns the figures."""
    cfg = load_config(config, [f"data.phantom.modality={modality}", f"preprocess.modality={modality}"])
    t0 = time.perf_counter()
    rows = cohort_rows(cfg, work)
    data_s = time.perf_counter() - t0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ckpt = train_segmenter(rows, cfg, work / "segment", progress=False)
    train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - cpu0
    seg = load_stage1(ckpt, cfg)
    history = seg.meta.get("history") or {}
    test = [r for r in rows if r.split == "test"]
    per_case, t0 = [], time.perf_counter()
    for row in test:
        vol = load_volume(row.image)
        out = segment_volume(seg, vol, batch_size=cfg.inference.batch_size, postprocess=cfg.segment.postprocess)
        gt = load_mask(row.mask, vol)
        m = segmentation_metrics(out.segmentation.mask.astype(bool), gt.astype(bool), vol.spacing)
        per_case.append({"case_id": row.case_id, "dice": m["dice"], "hd95_mm": m["hd95_mm"],
                         "shape": list(vol.data.shape)})
    infer_s = time.perf_counter() - t0
    dices = [c["dice"] for c in per_case]
    return {
        "modality": modality, "ct_phase": cfg.data.phantom.ct_phase if modality == "ct" else None,
        "n_cases": len(rows), "n_test": len(test),
        "budget_minutes": cfg.segment.train.max_minutes, "image_size": cfg.preprocess.image_size,
        "encoder": cfg.segment.model.encoder, "encoder_weights": cfg.segment.model.encoder_weights,
        "data_s": round(data_s, 1), "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu_s, 1),
        "training": {k: history.get(k) for k in ("epochs", "steps", "best_val_dice", "best_epoch", "stopped_by",
                                                 "fit_seconds", "val_seconds", "n_train_cases", "n_val_cases")},
        "test_dice": summarize(dices), "test_dice_min": float(np.min(dices)),
        "test_hd95_mm_median": float(np.nanmedian([c["hd95_mm"] for c in per_case])),
        "inference_s_per_volume": round(infer_s / max(len(test), 1), 2), "cases": per_case,
    }


def main() -> None:
    """Parse the command line, run each modality, print and save the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="segment", help="config file or preset name (default: segment)")
    ap.add_argument("--modality", action="append", help="ct, mr-t2 or us (repeatable; default ct and mr-t2)")
    ap.add_argument("--work", help="work folder (default: a temporary folder, removed)")
    ap.add_argument("--no-save", action="store_true", help="print only, do not write benchmarks/results/")
    ap.add_argument("--tag", default="", help="suffix of the result file name (accept_stage1_<tag>)")
    args = ap.parse_args()
    modalities = args.modality or ["ct", "mr-t2"]
    result: dict[str, Any] = {
        "benchmark": "accept_stage1", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "config": args.config,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "modalities": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work) if args.work else Path(tmp)
        for m in modalities:
            result["modalities"][m] = run_modality(args.config, m, root / m)
    finish(result, "accept_stage1" + (f"_{args.tag}" if args.tag else ""), save=not args.no_save)


if __name__ == "__main__":
    main()

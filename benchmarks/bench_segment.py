"""Stage-1 throughput: training steps/s and inference slices/s next to the raw model rates of this run.

On phantom volumes (generated into a temporary folder unless ``--manifest`` is given), one process
measures, at the same batch size and resolution:

* ``raw_forward``: the bare network forward (eval, ``inference_mode``, channels-last, the resolved
  precision) in slices/s, with FLOPs per slice (``torch.utils.flop_counter``) and achieved GFLOP/s;
* ``raw_train_step``: forward + Dice/CE loss + backward + AdamW step at the training batch size, steps/s;
* ``training``: :func:`livercad.segment.fit.train_segmenter` steps/s (Lightning loop, data loading,
  augmentation, the first warm-up step included; validation excluded) and its ratio to the raw step rate
  (use ``--train-steps`` of 20 or more so that the warm-up step weighs little);
* ``inference``: :func:`livercad.segment.infer.segment_volume` slices/s end to end (preprocess, model,
  post-processing, mapping back to the original grid), its model-only rate and the ratio to the raw forward.

Usage::

    python benchmarks/bench_segment.py --cases 6 --image-size 128 --train-steps 12 > result.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from bench_common import cpu_name
from monai.losses import DiceCELoss
from torch.utils.flop_counter import FlopCounterMode

from livercad.config import load_config
from livercad.io.manifest import read_manifest
from livercad.io.nifti import load_volume
from livercad.phantom import generate_cohort
from livercad.pipeline.training.splits import patient_split
from livercad.runtime.backend import resolve_precision
from livercad.segment.fit import train_segmenter
from livercad.segment.infer import Segmenter, segment_volume
from livercad.segment.model import build_segmenter


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation, allocations)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def raw_forward(model: torch.nn.Module, batch: int, size: int, channels: int, precision: str, repeats: int) -> dict:
    """Bare forward rate of ``model`` in slices/s and GFLOP/s."""
    model = model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    flops = counter.get_total_flops() / batch
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with torch.inference_mode(), amp:
            model(x)

    sec = _timed(step, repeats)
    return {"batch": batch, "slices_per_s": batch / sec, "gflop_per_slice": flops / 1e9,
            "gflop_per_s": flops * batch / sec / 1e9}


def raw_train_step(model: torch.nn.Module, batch: int, size: int, channels: int, repeats: int) -> dict:
    """Bare forward + loss + backward + AdamW step rate (fp32, channels-last, as in training)."""
    model = model.train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size) > 0.7).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    sec = _timed(step, repeats)
    return {"batch": batch, "steps_per_s": 1.0 / sec, "slices_per_s": batch / sec}


def _cohort(args: argparse.Namespace, folder: Path) -> list:
    manifest = Path(args.manifest) if args.manifest else generate_cohort(
        folder / "cohort", n=args.cases, modality=args.modality, seed=3, shape=(args.size, args.size, args.slices))
    return patient_split(read_manifest(manifest), fractions=(0.5, 0.25, 0.25), seed=0)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", help="use this cohort instead of a generated phantom")
    ap.add_argument("--modality", default="ct", choices=["ct", "mr-t2", "us"])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--size", type=int, default=128, help="phantom in-plane size")
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--image-size", type=int, default=128, help="model in-plane size")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--batch-size", type=int, default=4, help="inference slices per forward")
    ap.add_argument("--train-batch-size", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=12)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--repeats", type=int, default=5)
    return ap.parse_args()


def inference(seg: Segmenter, rows: list, batch: int) -> dict:
    """End-to-end ``segment_volume`` rate over up to four volumes (after one warm-up volume)."""
    vols = [load_volume(r.image) for r in rows[:4]]
    segment_volume(seg, vols[0], batch_size=batch)
    outs, start = [], time.perf_counter()
    for v in vols:
        outs.append(segment_volume(seg, v, batch_size=batch))
    total = time.perf_counter() - start
    n = sum(o.prob_model.shape[0] for o in outs)
    stages = {k: sum(o.seconds[k] for o in outs) for k in outs[0].seconds}
    return {"volumes": len(outs), "slices": n, "batch": batch, "slices_per_s": n / total,
            "model_slices_per_s": n / stages["model"], "seconds_by_stage": stages}


def main() -> None:
    args = _args()
    precision = resolve_precision(args.precision, "cpu")
    cfg = load_config(None, overrides=[
        f"preprocess.modality={args.modality}", f"preprocess.image_size={args.image_size}",
        f"segment.model.encoder={args.encoder}", "segment.model.encoder_weights=none",
        f"segment.train.batch_size={args.train_batch_size}",
        f"segment.train.steps_per_epoch={args.train_steps}", "segment.train.max_epochs=1",
        "segment.train.max_minutes=30"])
    size = args.image_size
    with tempfile.TemporaryDirectory() as tmp:
        rows = _cohort(args, Path(tmp))
        fwd = raw_forward(build_segmenter(cfg.segment.model), args.batch_size, size, 3, precision, args.repeats)
        bwd = raw_train_step(build_segmenter(cfg.segment.model), args.train_batch_size, size, 3, args.repeats)
        ckpt = train_segmenter(rows, cfg, Path(tmp) / "train", progress=False, max_steps=args.train_steps)
        seg = Segmenter.load(ckpt, precision=precision, device="cpu")
        hist = seg.meta["history"]
        train_rate = hist["steps"] / max(hist["fit_seconds"] - hist["val_seconds"], 1e-9)
        inf = inference(seg, rows, args.batch_size)
    inf["fraction_of_raw"] = inf["slices_per_s"] / fwd["slices_per_s"]
    result = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "encoder": args.encoder, "image_size": size, "precision": precision,
        "raw_forward": fwd, "raw_train_step": bwd,
        "training": {"steps": hist["steps"], "batch": args.train_batch_size, "steps_per_s": train_rate,
                     "fraction_of_raw": train_rate / bwd["steps_per_s"]},
        "inference": inf,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""End-to-end pipeline benchmark against the machine's measured GEMM peak and a naive MONAI recipe (issue 7).

One process run measures, on phantom CT volumes saved as ``.nii.gz``:

* ``machine``: CPU model and flags (avx512f, avx512_bf16, amx), cores, threads, torch version, load average;
* ``gemm``: peak ``torch.mm`` GFLOP/s for fp32 and bf16 (best of a few), and ONNX Runtime MatMul fp32;
* ``models``: FLOPs per forward (``FlopCounterMode``) and achieved GFLOP/s in the pipeline's precision and
  batch size: U-Net/ResNet34 (random weights) and ResNet50 (random weights), for each backend (eager torch
  channels-last, eager torch contiguous, ONNX Runtime; timed alternately), with the fraction of the peak;
* ``backend``: the backend each stage used (``--backend``, default the pipeline's ``inference.backend``);
* ``pipeline``: seconds per volume with a per-stage breakdown (read, preprocess, segment, postprocess,
  regions, classify, write), calling the stage functions the way ``livercad/pipeline/predict/predictor.py`` does;
* ``speedup_vs_naive`` (whole pipeline, both stages) and ``speedup_vs_naive_stage1`` (read to write of
  stage 1 only, what the naive recipe does);
* ``naive``: the same volumes through a textbook MONAI recipe (LoadImage -> EnsureChannelFirst ->
  ScaleIntensityRange -> Orientation -> Resize -> per-slice loop at batch 1, fp32 eager -> threshold ->
  manual inverse -> nibabel save), with Dice and probability agreement against the pipeline;
* ``peers`` (``bench_peers.py``): livercad, MONAI's whole-body CT SegResNet at 3 mm, a TotalSegmentator
  ``--fast``-style 3-D nnU-Net at 3 mm and the naive recipe, each in its own process on the same volumes:
  seconds per volume, peak RSS, ``livercad_ratio`` (peer seconds / livercad seconds) and the fastest peer;
* ``precision``: bf16 vs fp32 agreement and speed; ``batch_sweep``: segmenter slices/s at batch 1, 2, 4, 8;
* ``onnx_vs_torch``: ONNX Runtime vs eager torch segmenter on the first volume (when onnx is used);
* ``coarse_to_fine``: the stage-1 pass with ``inference.coarse_to_fine`` vs the full pass (seconds, slices
  run, mask Dice between them; meaningful with a trained ``--segmenter``);
* ``peak_rss_mb``: ``resource.getrusage`` maximum resident set size.

The stage-1 model is the shipped one (``livercad/models/liver/segmenter.pt``, at its own image size) unless
``--segmenter PATH`` or ``--random-weights`` (untrained, ``--image-size``) says otherwise; without the shipped
model the run stops at once with a one-line message. ``--device auto`` runs on CUDA when there is one.

Usage::

    python benchmarks/bench_pipeline.py                 # 3 volumes of 512x512x100, the shipped model, the peers
    python benchmarks/bench_pipeline.py --quick --random-weights   # small smoke run
    python benchmarks/bench_pipeline.py --backend torch # eager PyTorch instead of the default backend
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from bench_backends import achieved, best_time, compile_check, flops_of, gemm_peak, ort_peak, peak_of
from bench_common import RESULTS, make_volumes, rss_mb, write_result
from bench_peers import (
    add_model_args,
    add_peer_args,
    checkpoint_for_children,
    model_source,
    resolve_device,
    run_peers,
    selected,
    summary,
)
from torch.utils.flop_counter import FlopCounterMode

from livercad.classify.infer import Classifier, predict_case
from livercad.classify.model import build_classifier
from livercad.config import CT_WINDOW, InferenceConfig
from livercad.io.manifest import ManifestRow
from livercad.io.nifti import load_volume, save_mask
from livercad.pipeline.stage1 import case_slices
from livercad.preprocess.prepare import context_stack
from livercad.runtime.backend import bf16_supported
from livercad.segment.infer import Segmenter, segment_prepared, segment_volume

CLASSES = ["normal", "steatosis", "cirrhosis"]


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model, relevant flags, cores, torch build, the device the models run on and current load."""
    device = device or torch.device("cpu")
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
        flags = set(next(ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")))
    except (OSError, StopIteration):
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    out = {"host": socket.gethostname(), "cpu": model, "flags": {f: f in flags for f in wanted},
           "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "device": str(device),
           "bf16_native": bf16_supported(device), "loadavg": list(os.getloadavg())}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def random_classifier(image_size: int, precision: str, backend: str,
                      device: torch.device | str = "cpu") -> Classifier:
    """A random-weight ResNet50 stage-2 classifier with the default region settings."""
    torch.manual_seed(0)
    net = build_classifier("resnet50", weights="none", num_classes=len(CLASSES), strategy="scratch")
    meta = {"kind": "livercad-classifier", "backbone": "resnet50", "classes": CLASSES, "region": "mask",
            "image_size": image_size, "in_channels": 3}
    return Classifier(net, meta, precision=precision, device=device, backend=backend)


def run_pipeline(seg: Segmenter, clf: Classifier | None, path: Path, out: Path, batch: int,
                 coarse_to_fine: bool = False, keep_prob: bool = True) -> dict[str, Any]:
    """One case the way ``Predictor._process`` runs it, timing each stage.

    The timed path is the Predictor's (``keep_prob=False``: no full-resolution probability map). With
    ``keep_prob`` the original-grid probability (for the agreement with the naive recipe) is computed
    afterwards, outside the timings. ``clf=None``: as ``livercad predict`` with a segmentation-only bundle
    (the shipped model): no stage-2 input is built (``model_mask=False``), no ``regions`` or ``classify``.
    """
    s: dict[str, float] = {}
    t = time.perf_counter()
    volume = load_volume(path)
    s["read"] = time.perf_counter() - t
    seg_out = segment_volume(seg, volume, batch_size=batch, coarse_to_fine=coarse_to_fine, keep_prob=False,
                             model_mask=clf is not None)
    s["preprocess"], s["segment"], s["postprocess"] = (seg_out.seconds[k] for k in ("preprocess", "model",
                                                                                     "postprocess"))
    t = time.perf_counter()
    save_mask(seg_out.segmentation.mask, volume, out / f"{path.name.split('.')[0]}_mask.nii.gz")
    s["write"] = time.perf_counter() - t
    proba = None
    if clf is not None:
        t = time.perf_counter()
        cs = case_slices(ManifestRow(path.name, path.name, path), seg_out)
        s["regions"] = time.perf_counter() - t
        t = time.perf_counter()
        proba = predict_case(clf, cs, batch_size=max(8, batch)).tolist()
        s["classify"] = time.perf_counter() - t
    s["total"] = sum(s.values())
    prob = None
    if keep_prob:  # untimed: the Predictor never builds this map
        prob = seg_out.prepared.to_original(seg_out.prob_model)
    return {"seconds": s, "prob": prob, "mask": seg_out.segmentation.mask,
            "prob_model": seg_out.prob_model, "case_proba": proba, "slices": int(volume.shape[2])}


def predict_section(paths: list[Path], out: Path) -> dict[str, Any]:
    """``livercad predict`` itself on the volumes (:func:`bench_predict.timed_run`: the default bundle).

    Per case it also resolves the modality, writes the mask, computes the liver statistics and draws the
    QC picture, and reads the next case while this one is post-processed (``inference.read_ahead``).
    ``over_model``: mean case seconds / the seconds of stage 1's network per case, both from the same run.
    """
    from bench_predict import timed_run

    try:
        run = timed_run(paths, out / "predict")
    except RuntimeError as exc:
        return {"error": str(exc)}
    return {"case_seconds": run.case_seconds, "mean_case_seconds": round(float(np.mean(run.case_seconds)), 3),
            "model_seconds": round(run.model_seconds, 3), "over_model": round(run.over_model, 3)}


def run_naive(model: torch.nn.Module, path: Path, out: Path, size: int, device: torch.device | str = "cpu",
              context: int = 1, ct_window: tuple[float, float] = CT_WINDOW) -> dict[str, Any]:
    """A textbook MONAI recipe: per-slice batch-1 fp32 eager loop, threshold, manual inverse, nibabel save.

    Intensity windowing comes before resampling, as in MONAI's tutorials and in ``livercad.preprocess.prepare``
    (windowing after the resize changes voxels at window edges by up to the full range). The slices stay
    MONAI ``MetaTensor`` objects all the way through the network, as they would in user code. ``model``
    lives on ``device``; ``context`` and ``ct_window`` are the network's (its checkpoint's preprocessing).
    """
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation, Resize, ScaleIntensityRange

    s: dict[str, float] = {}
    t = time.perf_counter()
    img = EnsureChannelFirst()(LoadImage(image_only=True)(str(path)))
    s["read"] = time.perf_counter() - t
    t = time.perf_counter()
    img = ScaleIntensityRange(a_min=ct_window[0], a_max=ct_window[1], b_min=-1.0, b_max=1.0, clip=True)(img)
    canon = Orientation(axcodes="RAS")(img)
    x = Resize((size, size, -1), mode="bilinear")(canon)
    slices = torch.as_tensor(x)[0].permute(2, 0, 1).contiguous()
    s["preprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    model_fp = model.to(memory_format=torch.contiguous_format)
    probs = []
    with torch.no_grad():
        for k in range(slices.shape[0]):
            probs.append(torch.sigmoid(model_fp(context_stack(slices, [k], context).to(device)))[0, 0])
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    s["segment"] = time.perf_counter() - t
    t = time.perf_counter()
    prob = F.interpolate(torch.stack(probs)[None], size=tuple(canon.shape[1:3]), mode="bilinear")[0].cpu()
    prob_c = prob.permute(1, 2, 0).numpy()
    affine = np.asarray(img.affine)
    inverse = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                              nib.orientations.io_orientation(affine))
    prob_o = np.ascontiguousarray(nib.orientations.apply_orientation(prob_c, inverse))
    mask = (prob_o > 0.5).astype(np.uint8)
    s["postprocess"] = time.perf_counter() - t
    t = time.perf_counter()
    nib.save(nib.Nifti1Image(mask, affine), str(out / f"{path.name.split('.')[0]}_naive.nii.gz"))
    s["write"] = time.perf_counter() - t
    s["total"] = sum(s.values())
    return {"seconds": s, "prob": prob_o, "mask": mask}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    den = a.sum() + b.sum()
    return 1.0 if den == 0 else float(2 * np.logical_and(a, b).sum() / den)


def mean_stages(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per-stage mean seconds per volume over ``runs``."""
    return {k: round(float(np.mean([r["seconds"][k] for r in runs])), 3) for k in runs[0]["seconds"]}


def batch_sweep(seg: Segmenter, size: int, batches: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, float]:
    """Segmenter model-only slices/s at each batch size (the pipeline's backend and precision)."""
    amp = torch.autocast(seg.device.type, dtype=torch.bfloat16, enabled=seg.precision == "bf16")
    chans = 2 * int(seg.meta["context"]) + 1
    out = {}
    for b in batches:
        x = torch.randn(b, chans, size, size, device=seg.device).contiguous(
            memory_format=torch.channels_last if seg.runner is None else torch.contiguous_format)

        def run(inp: torch.Tensor = x) -> None:
            with torch.inference_mode(), amp:
                seg.forward(inp)
            if seg.device.type == "cuda":
                torch.cuda.synchronize(seg.device)

        out[str(b)] = round(b / best_time(run, 1), 2)
    return out


def precision_check(args: argparse.Namespace, paths: list[Path], fp32: dict[str, Any]) -> dict[str, Any]:
    """bf16 vs fp32 on the same volumes: mask Dice, max probability difference, model-time speedup."""
    dev = resolve_device(args.device)
    native = bf16_supported(dev)
    if not native and not args.force_bf16:
        return {"skipped": f"this {dev.type.upper()} has no native bf16 (CPU: AVX-512-BF16/AMX): bf16 autocast is "
                           "emulated (orders of magnitude slower than fp32, see gemm.bf16); rerun with "
                           "--force-bf16 to measure anyway"}
    seg16 = Segmenter.random(image_size=args.image_size, encoder="resnet34", precision="bf16", device=dev)
    seg32 = Segmenter.random(image_size=args.image_size, encoder="resnet34", precision="fp32", device=dev)
    dices, diffs, t16, t32 = [], [], 0.0, 0.0
    for p in paths if native else paths[:1]:
        prep = seg32.prepare(load_volume(p))
        if not native:  # emulated bf16: a few slices only
            prep = type(prep)(prep.image[: args.bf16_slices], prep.canonical_shape, prep.ornt, prep.spacing)
        t = time.perf_counter()
        a = segment_prepared(seg32, prep, batch_size=args.batch)
        t32 += time.perf_counter() - t
        t = time.perf_counter()
        b = segment_prepared(seg16, prep, batch_size=args.batch)
        t16 += time.perf_counter() - t
        dices.append(dice(a.numpy() > 0.5, b.numpy() > 0.5))
        diffs.append(float((a - b).abs().max()))
    return {"native": native, "mask_dice_min": round(min(dices), 5), "prob_max_abs_diff": round(max(diffs), 5),
            "speedup_bf16_over_fp32": round(t32 / t16, 3), "slices_compared": "all" if native else args.bf16_slices}


def cuda_gemm_peak(dtype: torch.dtype, n: int, device: torch.device, reps: int = 3) -> dict[str, float]:
    """Best ``torch.mm`` GFLOP/s on ``n x n`` matrices on a CUDA device (synchronised timing)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))

    def run() -> None:
        torch.mm(a, b)
        torch.cuda.synchronize(device)

    return {"n": n, "gflops": round(2 * n**3 / best_time(run, reps) / 1e9, 1)}


def cuda_achieved(model: torch.nn.Module, shape: tuple[int, ...], precision: str, peak: float, reps: int,
                  device: torch.device) -> dict[str, Any]:
    """GFLOP/s and fraction of ``peak`` of eager torch (channels-last) on a CUDA device."""
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x[:1])
    flops = fc.get_total_flops() * shape[0]
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16")

    def run() -> None:
        with torch.inference_mode(), amp:
            model(x)
        torch.cuda.synchronize(device)

    t = best_time(run, reps)
    return {"batch": shape[0], "precision": precision, "backend": "torch", "gflop_per_forward": round(flops / 1e9, 3),
            "seconds": round(t, 4), "gflops": round(flops / t / 1e9, 1),
            "fraction_of_peak": round(flops / t / 1e9 / peak, 3)}


def model_section(args: argparse.Namespace, seg: Segmenter, clf: Classifier, gemm: dict[str, Any],
                  ) -> dict[str, Any]:
    """FLOPs per forward and achieved GFLOP/s of both models per backend, in the pipeline's precision and batch."""
    s, c, chans = args.image_size, args.classify_size, 2 * int(seg.meta["context"]) + 1
    peak = peak_of(gemm, seg.precision)
    if seg.device.type == "cuda":  # eager torch only (ONNX Runtime runs on the CPU), GPU GEMM peak
        return {"peak_gflops": peak, "device": str(seg.device),
                "unet_resnet34": {"encoder": seg.meta["encoder"],
                                  **cuda_achieved(seg.model, (args.batch, chans, s, s), seg.precision, peak,
                                                  args.reps, seg.device)},
                "resnet50": cuda_achieved(clf.model, (max(8, args.batch), 3, c, c), clf.precision, peak, args.reps,
                                          clf.device)}
    unet_1ch = Segmenter.random(image_size=s, encoder="resnet34", context=0, device="cpu").model
    out = {
        "peak_gflops": peak,
        "unet_resnet34": {"encoder": seg.meta["encoder"],
                          f"gflop_{chans}x{s}": round(flops_of(seg.model, (1, chans, s, s)) / 1e9, 3),
                          f"gflop_1x{s}": round(flops_of(unet_1ch, (1, 1, s, s)) / 1e9, 3),
                          **achieved(seg.model, seg.runner, seg.backend, (args.batch, chans, s, s), seg.precision,
                                     peak, args.reps)},
        "resnet50": {f"gflop_3x{c}": round(flops_of(clf.model, (1, 3, c, c)) / 1e9, 3),
                     **achieved(clf.model, clf.runner, clf.backend, (max(8, args.batch), 3, c, c), clf.precision,
                                peak, args.reps)},
    }
    if args.compile:
        out["unet_resnet34"]["torch_compile"] = compile_check(seg.model, (args.batch, chans, s, s), args.reps)
    return out


def backend_agreement(seg: Segmenter, path: Path, batch: int) -> dict[str, Any] | None:
    """ONNX vs torch segmenter on one volume: max probability difference and mask Dice (model space)."""
    if seg.runner is None:
        return None
    prep = seg.prepare(load_volume(path))
    eager = Segmenter(seg.model, seg.meta, seg.device, seg.precision, seg.channels_last)
    a, b = segment_prepared(eager, prep, batch_size=batch), segment_prepared(seg, prep, batch_size=batch)
    return {"prob_max_abs_diff": round(float((a - b).abs().max()), 7),
            "mask_dice": round(dice(a.numpy() > 0.5, b.numpy() > 0.5), 6)}


def coarse_section(seg: Segmenter, paths: list[Path], batch: int, trained: bool) -> dict[str, Any]:
    """Coarse-to-fine vs full stage-1 pass per volume: model seconds, slices run, mask Dice between the two."""
    full_s, fast_s, dices, ran = [], [], [], []
    for path in paths:
        prep = seg.prepare(load_volume(path))
        t = time.perf_counter()
        a = segment_prepared(seg, prep, batch_size=batch)
        full_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = segment_prepared(seg, prep, batch_size=batch, coarse_to_fine=True)
        fast_s.append(time.perf_counter() - t)
        dices.append(round(dice(a.numpy() > 0.5, b.numpy() > 0.5), 6))
        ran.append(int((b.flatten(1).abs().amax(1) > 0).sum()))
    return {"full_s": round(float(np.mean(full_s)), 3), "coarse_to_fine_s": round(float(np.mean(fast_s)), 3),
            "speedup": round(float(np.sum(full_s) / np.sum(fast_s)), 3), "mask_dice_vs_full": dices,
            "slices_with_output": ran, "trained_weights": trained,
            "note": "meaningful with a trained --segmenter only (random weights see 'liver' everywhere)"}


def compare(pipe: list[dict[str, Any]], naive: list[dict[str, Any]]) -> dict[str, Any]:
    """Mask Dice and probability agreement between the pipeline and the naive recipe."""
    return {"mask_dice": [round(dice(p["mask"], n["mask"]), 5) for p, n in zip(pipe, naive, strict=True)],
            "prob_mean_abs_diff": [round(float(np.abs(p["prob"] - n["prob"]).mean()), 5)
                                   for p, n in zip(pipe, naive, strict=True)],
            "prob_max_abs_diff": [round(float(np.abs(p["prob"] - n["prob"]).max()), 5)
                                  for p, n in zip(pipe, naive, strict=True)]}


def model_info(seg: Segmenter, source: dict[str, Any]) -> dict[str, Any]:
    """Which stage-1 model the run timed: source (shipped | segmenter | random), path, sha256, size, architecture."""
    meta = seg.meta
    keys = ("arch", "encoder", "decoder_channels", "context")
    return {**source, "sha256": (meta.get("checkpoint") or {}).get("sha256"),  # None: a random segmenter
            "image_size": int(seg.preprocessing["image_size"]), **{k: meta.get(k) for k in keys},
            "weights": "trained" if source["source"] != "random" else "random"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every section of the benchmark, in one process (the ``peers`` section in one process per contender)."""
    dev = resolve_device(args.device)
    result: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(dev),
                              "args": {k: v for k, v in vars(args).items() if k not in ("out", "tag", "model")}}
    n = args.gemm_n
    if dev.type == "cuda":
        result["gemm"] = {"fp32": cuda_gemm_peak(torch.float32, n, dev), "bf16": cuda_gemm_peak(torch.bfloat16, n, dev),
                          "ort_fp32": {"gflops": None, "reason": "CUDA run: ONNX Runtime (CPU) not used"}}
    else:
        result["gemm"] = {"fp32": gemm_peak(torch.float32, n),
                          "bf16": gemm_peak(torch.bfloat16, n if result["machine"]["bf16_native"] else 256, reps=1),
                          "ort_fp32": ort_peak(n)}
    opts = {"precision": args.precision, "backend": args.backend, "device": dev}
    if args.model["path"]:
        seg = Segmenter.load(args.model["path"], **opts)
        args.image_size = int(seg.preprocessing["image_size"])  # the model's own size
    else:
        seg = Segmenter.random(image_size=args.image_size, encoder="resnet34", **opts)
    result["model"] = model_info(seg, args.model)
    clf = random_classifier(args.classify_size, seg.precision, args.backend, device=dev)
    result["precision"] = seg.precision
    result["backend"] = {"requested": args.backend, "segmenter": seg.backend, "classifier": clf.backend}
    result["models"] = model_section(args, seg, clf, result["gemm"])
    result["batch_sweep_slices_per_s"] = batch_sweep(seg, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = make_volumes(args.volumes, args.shape, Path(tmp))
        result["phantom_generation_s"] = round(time.perf_counter() - t, 2)
        pipe = [run_pipeline(seg, clf, p, Path(tmp), args.batch, args.coarse_to_fine) for p in paths]
        result["pipeline"] = {"seconds_per_volume": mean_stages(pipe), "slices_per_volume": pipe[0]["slices"],
                              "case_proba": [p["case_proba"] for p in pipe]}
        result["peak_rss_mb_after_pipeline"] = round(rss_mb(), 1)
        if selected(args.peers):
            ckpt = checkpoint_for_children(args.model, args.image_size, Path(tmp))
            result["peers"] = run_peers(paths, ckpt, args, Path(tmp))
        if "naive_monai_2d" in selected(args.peers) and "error" not in result["peers"]["naive_monai_2d"]:
            r = result["peers"]["naive_monai_2d"]  # the naive recipe ran in its own process: its maps are on disk
            naive = [{"prob": (prob := np.load(f)), "mask": (prob > 0.5).astype(np.uint8)}
                     for f in r.pop("probabilities")]
            result["naive"] = {"seconds_per_volume": {**r["stages_s"], "total": r["seconds_per_volume"]},
                               "ran_in": "its own process (peers.naive_monai_2d)"}
        else:
            pp = seg.preprocessing
            naive = [run_naive(seg.model, p, Path(tmp), args.image_size, device=dev, context=int(seg.meta["context"]),
                               ct_window=tuple(pp["ct_window"])) for p in paths]
            seg.model.to(memory_format=torch.channels_last)
            result["naive"] = {"seconds_per_volume": mean_stages(naive), "ran_in": "this process"}
        result["agreement"] = compare(pipe, naive)
        result["speedup_vs_naive"] = round(result["naive"]["seconds_per_volume"]["total"]
                                           / result["pipeline"]["seconds_per_volume"]["total"], 3)
        pipe_s = result["pipeline"]["seconds_per_volume"]  # the naive recipe has no stage 2: compare stage 1 alone
        stage1 = sum(pipe_s[k] for k in ("read", "preprocess", "segment", "postprocess", "write"))
        result["speedup_vs_naive_stage1"] = round(result["naive"]["seconds_per_volume"]["total"] / stage1, 3)
        seg_s = result["pipeline"]["seconds_per_volume"]
        result["end_to_end_over_model"] = round(seg_s["total"] / (seg_s["segment"] + seg_s["classify"]), 3)
        only = mean_stages([run_pipeline(seg, None, p, Path(tmp), args.batch, args.coarse_to_fine, keep_prob=False)
                            for p in paths])
        result["segmentation_only"] = {"seconds_per_volume": only,
                                       "end_to_end_over_model": round(only["total"] / only["segment"], 3)}
        if args.model["source"] == "shipped":  # livercad predict runs the default bundle
            result["predict"] = predict_section(paths, Path(tmp))
        result["bf16_vs_fp32"] = precision_check(args, paths, result)
        result["onnx_vs_torch"] = backend_agreement(seg, paths[0], args.batch)
        result["coarse_to_fine"] = coarse_section(seg, paths, args.batch, args.model["source"] != "random")
    result["peak_rss_mb"] = round(rss_mb(), 1)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volumes", type=int, default=3)
    p.add_argument("--shape", default="512x512x100", help="phantom volume shape XxYxZ")
    p.add_argument("--image-size", type=int, default=256,
                   help="segmenter in-plane size with --random-weights (a trained model runs at its own size)")
    p.add_argument("--classify-size", type=int, default=224, help="classifier input size")
    p.add_argument("--batch", type=int, default=4, help="slice batch size of the pipeline")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--backend", default=InferenceConfig().backend, choices=["auto", "torch", "onnx"],
                   help="inference backend of both stages (default: the pipeline's inference.backend)")
    p.add_argument("--reps", type=int, default=3, help="timed forwards per backend in the models section")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile of the segmenter (slow)")
    add_model_args(p)
    add_peer_args(p)
    p.add_argument("--gemm-n", type=int, default=2048)
    p.add_argument("--force-bf16", action="store_true", help="measure bf16 agreement even when emulated")
    p.add_argument("--bf16-slices", type=int, default=4, help="slices compared when bf16 is emulated")
    p.add_argument("--quick", action="store_true",
                   help="small smoke run (1 volume 96x96x12; --random-weights at 64 px; reduced peers, 12 mm)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--coarse-to-fine", action=argparse.BooleanOptionalAction,
                   default=InferenceConfig().coarse_to_fine, help="stage-1 coarse-to-fine in the pipeline section")
    p.add_argument("--tag", default="", help="suffix of the result file name (e.g. trained)")
    args = p.parse_args(argv)
    if args.quick:
        args.volumes, args.shape, args.image_size, args.classify_size, args.gemm_n = 1, "96x96x12", 64, 64, 512
    args.shape = tuple(int(v) for v in str(args.shape).lower().split("x"))
    if len(args.shape) != 3:
        p.error(f"--shape: expected XxYxZ, got {args.shape}")
    selected(args.peers)
    args.model = model_source(args)  # exits at once, one line, when the model is not there
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print it and write ``results/<date>_<host>[_tag].json`` (never replacing one)."""
    args = parse_args(argv)
    result = run(args)
    tag = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())[:40]
    text = json.dumps(result, indent=2)
    print(text)
    if "peers" in result:
        print(summary(result["peers"]))
    print(f"written {write_result(text, host + tag, args.out)}")


if __name__ == "__main__":
    main()

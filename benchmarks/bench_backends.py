"""Model-level speed of each inference backend, alternated in one process (issue 7 item 2).

Shared by ``bench_pipeline.py`` (its ``models`` section) and runnable on its own for a quick torch vs ONNX
Runtime comparison of both networks (random weights; FLOPs from ``FlopCounterMode``):

* ``torch``: eager, channels-last, ``inference_mode`` (bf16 autocast when ``--precision bf16``);
* ``torch_contiguous``: the same with the default (NCHW) memory format;
* ``onnx``: ONNX Runtime CPU session as the pipeline builds it (``livercad.runtime.backend``);
* ``--compile``: ``torch.compile`` of the segmenter (compile cost and speed vs eager).

The backends run one forward each in turn, ``--reps`` times, and the best time of each is kept, so that
load from other processes hits all of them alike. Fractions are of the better fp32 GEMM peak (torch.mm or
ONNX Runtime MatMul) measured in the same run.

Usage::

    python benchmarks/bench_backends.py                       # U-Net/ResNet34 at 4x3x256², ResNet50 at 8x3x224²
    python benchmarks/bench_backends.py --size 128 --reps 5
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from livercad.runtime.backend import make_session, onnx_available, select_backend


def best_time(fn: Any, reps: int) -> float:
    """Best wall time of ``reps`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gemm_peak(dtype: torch.dtype, n: int, reps: int = 3) -> dict[str, float]:
    """Best ``torch.mm`` GFLOP/s on ``n x n`` matrices."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    t = best_time(lambda: torch.mm(a, b), reps)
    return {"n": n, "gflops": round(2 * n**3 / t / 1e9, 1)}


def ort_peak(n: int, reps: int = 3) -> dict[str, Any]:
    """ONNX Runtime fp32 MatMul GFLOP/s (``None`` when onnx/onnxruntime are not importable)."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as exc:
        return {"gflops": None, "reason": str(exc)}
    io = [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("A", "B", "C")]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "mm", io[:2], io[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, 9)
    sess = make_session(model.SerializeToString())  # same threads and options as the pipeline's sessions
    feeds = {"A": np.random.rand(n, n).astype(np.float32), "B": np.random.rand(n, n).astype(np.float32)}
    t = best_time(lambda: sess.run(None, feeds), reps)
    return {"n": n, "gflops": round(2 * n**3 / t / 1e9, 1), "onnx": onnx.__version__, "ort": ort.__version__}


def flops_of(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs of one forward at input ``shape`` (torch's FlopCounterMode)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(shape))
    return int(fc.get_total_flops())


def alternate(runners: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Best wall time of each runner after a warm-up, runners alternated rep by rep (contention hits all alike)."""
    for fn in runners.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(reps):
        for k, fn in runners.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def backend_runners(model: torch.nn.Module, runner: Any, shape: tuple[int, ...], precision: str,
                    ) -> dict[str, Callable[[], Any]]:
    """One forward of ``model`` at ``shape`` per backend: torch channels-last, torch contiguous, onnx."""
    x = torch.randn(shape)
    xcl = x.contiguous(memory_format=torch.channels_last)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def eager(net: torch.nn.Module, inp: torch.Tensor) -> Callable[[], Any]:
        def run() -> None:
            with torch.inference_mode(), amp:
                net(inp)
        return run

    out = {"torch": eager(model, xcl), "torch_contiguous": eager(plain, x)}
    if runner is not None:
        out["onnx"] = lambda: runner(x)
    return out


def onnx_runner(model: torch.nn.Module, shape: tuple[int, ...], precision: str) -> tuple[Any, float | None]:
    """An ONNX Runtime runner for ``model`` (``None`` where onnx cannot run it) and its export+session seconds."""
    if precision != "fp32" or not onnx_available():
        return None, None
    t = time.perf_counter()
    _, runner = select_backend("onnx", model, (1, *shape[1:]), device=torch.device("cpu"), precision=precision)
    return runner, round(time.perf_counter() - t, 2)


def achieved(model: torch.nn.Module, runner: Any, used: str, shape: tuple[int, ...], precision: str, peak: float,
             reps: int = 3) -> dict[str, Any]:
    """GFLOP/s and fraction of ``peak`` of each backend at ``shape``; the top-level figures are ``used``'s."""
    flops = flops_of(model, shape)
    export_s = None
    if runner is None:
        runner, export_s = onnx_runner(model, shape, precision)
    best = alternate(backend_runners(model, runner, shape, precision), reps)
    per = {k: {"seconds": round(t, 4), "gflops": round(flops / t / 1e9, 1),
               "fraction_of_peak": round(flops / t / 1e9 / peak, 3)} for k, t in best.items()}
    return {"batch": shape[0], "precision": precision, "backend": used, "gflop_per_forward": round(flops / 1e9, 3),
            **per[used], "backends": per, "onnx_over_torch": round(best["torch"] / best["onnx"], 3)
            if "onnx" in best else None, "onnx_export_s_uncached": export_s}


def compile_check(model: torch.nn.Module, shape: tuple[int, ...], reps: int = 3) -> dict[str, Any]:
    """``torch.compile`` of ``model`` (channels-last): compile + first-call seconds, best time vs eager (alternated)."""
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    t = time.perf_counter()
    with torch.inference_mode():
        compiled(x)
    cost = time.perf_counter() - t

    def run(net: Any) -> Callable[[], None]:
        def go() -> None:
            with torch.inference_mode():
                net(x)
        return go

    best = alternate({"eager": run(model), "compiled": run(compiled)}, reps)
    return {"batch": shape[0], "compile_and_first_call_s": round(cost, 1), "eager_s": round(best["eager"], 4),
            "compiled_s": round(best["compiled"], 4), "speedup": round(best["eager"] / best["compiled"], 3)}


def peak_of(gemm: dict[str, Any], precision: str) -> float:
    """The GEMM peak of ``precision`` measured in this run (fp32: the better of torch.mm and ORT MatMul)."""
    if precision == "bf16":
        return float(gemm["bf16"]["gflops"])
    return float(max(gemm["fp32"]["gflops"], gemm["ort_fp32"].get("gflops") or 0.0))


def main(argv: list[str] | None = None) -> None:
    """Compare the backends on both networks and print JSON."""
    from livercad.classify.model import build_classifier
    from livercad.segment.infer import Segmenter

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="segmenter input size (classifier: 224/256 of it)")
    p.add_argument("--batch", type=int, default=4, help="segmenter batch (classifier: max(8, batch))")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--gemm-n", type=int, default=2048)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the segmenter (slow)")
    args = p.parse_args(argv)
    gemm = {"fp32": gemm_peak(torch.float32, args.gemm_n), "ort_fp32": ort_peak(args.gemm_n),
            "bf16": gemm_peak(torch.bfloat16, 256, reps=1)}
    peak, s, c = peak_of(gemm, args.precision), args.size, args.size * 224 // 256
    seg = Segmenter.random(image_size=s, encoder="resnet34").model
    clf = build_classifier("resnet50", weights="none", num_classes=3, strategy="scratch").eval()
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "gemm": gemm,
                           "peak_gflops": peak}
    out["unet_resnet34"] = achieved(seg, None, "torch", (args.batch, 3, s, s), args.precision, peak, args.reps)
    out["resnet50"] = achieved(clf, None, "torch", (max(8, args.batch), 3, c, c), args.precision, peak, args.reps)
    if args.compile:
        out["unet_resnet34"]["torch_compile"] = compile_check(seg, (args.batch, 3, s, s), args.reps)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

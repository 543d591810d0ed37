"""Memory of the prediction path (issue 7): peak RSS on one large volume, RSS drift over a long batch.

Each measurement runs in a fresh subprocess of this script, so their peaks do not mix:

* ``big``: one phantom CT volume of ``--big-shape`` (default 512x512x300, int16 ``.nii.gz``, generated in a
  child process) through the pipeline's stages (read, preprocess, segment, post-process, write, regions,
  classify; the calls of ``benchmarks/bench_pipeline.py``); reports the peak RSS of the case itself
  (``VmHWM`` reset after the models are loaded, ``peak_rss_mb_case``) and of the whole process, model
  loading and ONNX export included (``peak_rss_mb``).
* ``drift``: ``--volumes`` cases (default 200) cycling over 10 distinct phantom volumes of
  ``--drift-shape``; the current RSS (``/proc/self/statm``) after every case; reports it at the 20th and
  the last case and the relative change.

Models have random weights unless ``--segmenter`` gives a trained stage 1 (the weights do not change the
models' memory, but a random segmenter's mask covers the whole body, the worst case for post-processing);
the segmenter runs at ``--image-size``, the
ResNet50 classifier at ``--classify-size``, on the pipeline's default backend. Prints one JSON object and
writes it to ``benchmarks/results/<date>_rss.json``.

    python benchmarks/bench_rss.py                     # both measurements
    python benchmarks/bench_rss.py --volumes 40 --big-shape 256x256x100   # a smaller run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import RESULTS, rss_mb


def current_rss_mb() -> float:
    """Resident set size of this process now (MiB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (``VmHWM``) to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """``VmHWM`` of this process (MiB): the peak RSS since start or since :func:`reset_peak_rss`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _make_volume_elsewhere(shape: tuple[int, int, int], folder: Path) -> Path:
    """Generate the phantom volume in a child process, so its memory never counts towards this one's peak."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from bench_pipeline import make_volumes

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(make_volumes, 1, shape, folder).result()[0]


def _models(args: argparse.Namespace) -> tuple[Any, Any]:
    from bench_pipeline import random_classifier

    from livercad.config import InferenceConfig
    from livercad.runtime.backend import release_torch_weights
    from livercad.segment.infer import Segmenter

    backend = InferenceConfig().backend
    if args.segmenter:
        seg = Segmenter.load(args.segmenter, precision="auto", backend=backend, device="cpu")
    else:
        seg = Segmenter.random(image_size=args.image_size, encoder="resnet34", precision="auto", backend=backend)
    clf = random_classifier(args.classify_size, seg.precision, backend)
    release_torch_weights(seg, clf)  # as livercad.pipeline.predict.predictor.Predictor does after loading
    return seg, clf


def measure_big(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of one large volume through every stage."""
    from bench_pipeline import run_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        path = _make_volume_elsewhere(args.big_shape, Path(tmp))
        seg, clf = _models(args)
        startup_peak, before = rss_mb(), current_rss_mb()
        reset = reset_peak_rss()
        res = run_pipeline(seg, clf, path, Path(tmp), args.batch, args.coarse_to_fine, keep_prob=False)
        case_peak = peak_rss_mb() if reset else rss_mb()
    return {"shape": list(args.big_shape), "seconds": res["seconds"],
            "peak_rss_mb_startup": round(startup_peak, 1), "rss_mb_before_case": round(before, 1),
            "peak_rss_mb_case": round(case_peak, 1), "peak_reset": reset, "peak_rss_mb": round(rss_mb(), 1),
            "backend": {"segmenter": seg.backend, "classifier": clf.backend}}


def measure_drift(args: argparse.Namespace) -> dict[str, Any]:
    """Current RSS after each of ``args.volumes`` cases."""
    import gc

    from bench_pipeline import make_volumes, run_pipeline

    seg, clf = _models(args)
    rss: list[float] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_volumes(10, args.drift_shape, Path(tmp))
        for i in range(args.volumes):
            res = run_pipeline(seg, clf, paths[i % len(paths)], Path(tmp), args.batch, args.coarse_to_fine,
                               keep_prob=False)
            del res
            gc.collect()
            rss.append(round(current_rss_mb(), 1))
    first = rss[min(19, len(rss) - 1)]
    return {"shape": list(args.drift_shape), "volumes": args.volumes, "seconds": round(time.perf_counter() - t0, 1),
            "rss_mb_at_20": first, "rss_mb_at_last": rss[-1], "rss_mb_max_after_20": max(rss[19:] or rss),
            "change_20_to_last": round(rss[-1] / first - 1.0, 4), "rss_mb_every_10": rss[::10]}


def _shape(text: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in text.lower().split("x"))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected XxYxZ, got {text!r}")
    return parts  # type: ignore[return-value]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--big-shape", type=_shape, default=(512, 512, 300))
    p.add_argument("--drift-shape", type=_shape, default=(128, 128, 48))
    p.add_argument("--volumes", type=int, default=200)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--classify-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--segmenter", default=None, help="a trained segmenter.pt instead of random weights")
    p.add_argument("--coarse-to-fine", action="store_true", help="stage-1 coarse-to-fine in both measurements")
    p.add_argument("--tag", default="", help="suffix of the result file name")
    p.add_argument("--modes", default="big,drift", help="measurements to run (comma-separated: big, drift)")
    p.add_argument("--only", choices=["big", "drift"], help="run one measurement in this process (internal)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run each measurement in its own subprocess, print and save the JSON."""
    args = parse_args(argv)
    if args.only:
        fn = measure_big if args.only == "big" else measure_drift
        print(json.dumps(fn(args)))
        return
    argv = list(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {"benchmark": "bench_rss", "date": dt.datetime.now().isoformat(timespec="seconds"),
                              "args": {k: v for k, v in vars(args).items() if k not in ("out", "only")}}
    modes = [m for m in ("big", "drift") if m in args.modes.split(",")]
    for mode in modes:
        done = subprocess.run([sys.executable, __file__, *argv, "--only", mode], capture_output=True, text=True,
                              check=False)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        result[mode] = json.loads(lines[-1]) if done.returncode == 0 and lines else {
            "error": " ".join((done.stderr.strip().splitlines() or ["no output"])[-1].split())}
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, default=str)
    suffix = ("" if len(modes) == 2 else f"_{'_'.join(modes)}") + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{dt.date.today().isoformat()}_rss{suffix}.json").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

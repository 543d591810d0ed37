"""Model resolution: real-scan Dice against seconds per 512x512x100 CT volume at in-plane model sizes.

For each size (default 128, 192, 256) the stage-1 model (default: the shipped one) is run at that size on
the real scans of ``../shared/realdata`` (as ``accept_real.py`` scores them) and timed on one phantom CT
volume of 512x512x100 (preprocess + network + post-process, the model loaded once, one warm-up run).
A model trained at one size and run at another sees the anatomy at another scale, so for the sizes it
was not trained at the Dice row measures that mismatch as well as the resolution.

    python benchmarks/bench_resolution.py                       # shipped model, 128 192 256
    python benchmarks/bench_resolution.py --sizes 128 256 --model path/to/bundle --no-save
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from accept_real import REALDATA, checkpoint_path, git_commit, load_segmenter, real_case
from bench_common import cpu_name, finish

from livercad.phantom import make_case
from livercad.segment.infer import segment_volume
from livercad.types import Volume


def phantom_volume(shape: tuple[int, int, int]) -> Volume:
    """One phantom CT volume of ``shape`` (canonical RAS, HU) for timing."""
    case = make_case("timing", modality="ct", seed=424242, shape=shape)
    spacing = tuple(float(s) for s in np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0)))
    return Volume(case.image, case.affine, None, spacing)  # type: ignore[arg-type]


def one_size(path: Path, size: int, vol: Volume, realdata: Path, precision: str) -> dict[str, Any]:
    """Real-scan figures and seconds per volume at one model size."""
    seg, _ = load_segmenter(path, "auto", precision, size)
    real = {name: real_case(seg, realdata, name, True) for name in ("ct", "ct_crop", "mr")}
    segment_volume(seg, vol, coarse_to_fine=True, keep_prob=False)  # warm-up (ONNX export, caches)
    t0 = time.perf_counter()
    out = segment_volume(seg, vol, coarse_to_fine=True, keep_prob=False)
    seconds = time.perf_counter() - t0
    dice = {k: r.get("dice") for k, r in real.items()}
    return {"image_size": size, "seconds_per_volume": round(seconds, 3),
            "seconds_stages": {k: round(v, 3) for k, v in out.seconds.items()}, "backend": seg.backend,
            "precision": seg.precision, "dice": dice,
            "volume_error_rel": {k: r.get("volume_error_rel") for k, r in real.items()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every size; print and (unless ``--no-save``) write the JSON."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", help="bundle folder or segmenter.pt (default: the shipped model)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256])
    ap.add_argument("--shape", default="512x512x100", help="timing volume XxYxZ")
    ap.add_argument("--realdata", type=Path, default=REALDATA)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    path = checkpoint_path(args.model)
    if path is None:
        raise SystemExit("bench_resolution: no segmenter.pt; build the default model with 'make model' or pass --model")
    vol = phantom_volume(tuple(int(s) for s in args.shape.split("x")))  # type: ignore[arg-type]
    rows = [one_size(path, s, vol, args.realdata, args.precision) for s in args.sizes]
    result = {"benchmark": "bench_resolution", "commit": git_commit(), "machine": {"cpu_name": cpu_name()},
              "model": str(path), "shape": args.shape, "precision": args.precision, "sizes": rows}
    finish(result, "resolution", save=not args.no_save)
    return result


if __name__ == "__main__":
    main()

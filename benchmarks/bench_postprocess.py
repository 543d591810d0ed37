"""The largest-component step of stage-1 post-processing: MONAI's transform against ``largest_component``.

On phantom CT volumes the shipped model segments (default 2 of 512x512x100), each volume's thresholded liver
box, exactly as :func:`livercad.segment.postprocess.postprocess_binary` hands it over (slice-major), is given
``--reps`` times, alternately, to MONAI's ``KeepLargestConnectedComponent`` (what the fast path called before;
it labels the transposed view as that path did) and to :func:`~livercad.segment.postprocess.largest_component`.
The masks must be equal; the JSON gives the box, the number of components and the mean seconds of each.

Usage:
    python benchmarks/bench_postprocess.py                         # 2 volumes of 512x512x100, 5 reps each
    python benchmarks/bench_postprocess.py --volumes 1 --shape 96x96x24 --reps 2 --no-save --random-weights
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import cpu_name, finish, make_volumes
from monai.transforms import KeepLargestConnectedComponent
from scipy import ndimage

from livercad.io.nifti import load_volume
from livercad.models import default_bundle_path
from livercad.segment.infer import Segmenter, segment_prepared
from livercad.segment.postprocess import foreground_box, largest_component, memory_order_view, threshold_canonical


def monai_largest(part: np.ndarray) -> np.ndarray:
    """MONAI's largest component on the memory-order view of ``part`` (the previous fast path), as uint8."""
    keep = KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False)
    view, flip = memory_order_view(part)
    out = torch.as_tensor(keep(torch.from_numpy(view)[None])).as_subclass(torch.Tensor)[0].numpy().astype(np.uint8)
    return out.T if flip else out


def liver_box(seg: Segmenter, path: Path) -> np.ndarray:
    """The thresholded box of one volume as post-processing receives it (a slice-major uint8 copy)."""
    prepared = seg.prepare(load_volume(path))
    threshold = seg.postprocess.threshold
    binary = threshold_canonical(prepared, segment_prepared(seg, prepared, coarse_to_fine=True, threshold=threshold),
                                 threshold)
    box = foreground_box(binary.view(np.bool_))
    if box is None:
        raise SystemExit(f"bench_postprocess: no liver voxel in {path.name}")
    return binary[box].copy(order="K")


def seconds(fn: Callable[[np.ndarray], np.ndarray], part: np.ndarray) -> float:
    """One call on a fresh copy (``fn`` may work in place), timed."""
    arg = part.copy(order="K")
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line (module docstring); returns the result dict."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--shape", default="512x512x100", help="phantom volume shape XxYxZ")
    ap.add_argument("--reps", type=int, default=5, help="timed calls of each function per volume")
    ap.add_argument("--random-weights", action="store_true", help="a random 64-px segmenter instead of the shipped one")
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split("x"))
    seg = (Segmenter.random(image_size=64) if args.random_weights
           else Segmenter.load(default_bundle_path() / "segmenter.pt", precision="auto", backend="auto"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in make_volumes(args.volumes, shape, Path(tmp)):
            part = liver_box(seg, path)
            equal = bool(np.array_equal(monai_largest(part.copy(order="K")), largest_component(part.copy(order="K"))))
            times: dict[str, list[float]] = {"monai": [], "scipy": []}
            for _ in range(args.reps):
                times["monai"].append(seconds(monai_largest, part))
                times["scipy"].append(seconds(largest_component, part))
            n = int(ndimage.label(memory_order_view(part)[0], structure=np.ones((3, 3, 3), np.bool_))[1])
            rows.append({"box": list(part.shape), "foreground": round(float(part.mean()), 4), "components": n,
                         "equal": equal, "monai_s": round(float(np.mean(times["monai"])), 4),
                         "largest_component_s": round(float(np.mean(times["scipy"])), 4)})
    result = {"benchmark": "postprocess_largest_component", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu_name": cpu_name()}, "shape": list(shape), "reps": args.reps,
              "model": "random" if args.random_weights else "shipped", "volumes": rows}
    finish(result, f"postprocess{'_' + args.tag if args.tag else ''}", save=not args.no_save)
    return result


if __name__ == "__main__":
    main()

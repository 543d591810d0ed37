"""Seconds per case of ``livercad predict`` itself (``run_pipeline``, the default bundle) on phantom CT volumes.

The whole per-case flow a user runs: read, modality rule, stage 1 with the shipped model, mask write, liver
statistics and the QC picture. One untimed warm-up run first, then ``--reps`` timed runs over the same
volumes (the case records' ``seconds``). It imports whichever ``livercad`` is first on ``sys.path``, so the
same script times another checkout: ``PYTHONPATH=/path/to/checkout python benchmarks/bench_predict.py``.

Usage:
    python benchmarks/bench_predict.py                              # 2 volumes of 512x512x100, 2 timed runs
    python benchmarks/bench_predict.py --volumes 1 --shape 96x96x24 --reps 1 --no-save
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import cpu_name, finish, make_volumes

import livercad
from livercad.pipeline.predict.run import run_pipeline


def checkout(path: Path) -> str:
    """``git describe`` of the checkout ``livercad`` was imported from (``unknown`` outside git)."""
    try:
        return subprocess.run(["git", "-C", str(path), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def timed_run(paths: list[Path], out: Path) -> list[float]:
    """One ``run_pipeline`` over ``paths`` (the default bundle): the seconds of each case's record.

    Raises:
        RuntimeError: a case failed (its seconds would time a refusal, not a prediction); the reasons, one line.
    """
    res = run_pipeline([str(p) for p in paths], out, progress=False)
    if res.failures:
        raise RuntimeError("; ".join(str(c.error) for c in res.failures))
    return [round(c.seconds, 3) for c in res.cases]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line (module docstring); returns the result dict."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--shape", default="512x512x100", help="phantom volume shape XxYxZ")
    ap.add_argument("--reps", type=int, default=2, help="timed runs over the volumes")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    shape = tuple(int(s) for s in args.shape.split("x"))
    package = Path(livercad.__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_volumes(args.volumes, shape, Path(tmp))
        try:
            timed_run(paths, Path(tmp) / "warm")
            runs = [timed_run(paths, Path(tmp) / f"run{r}") for r in range(args.reps)]
        except RuntimeError as exc:
            raise SystemExit(f"bench_predict: a case failed: {exc}") from None
    seconds = [s for run in runs for s in run]
    result = {"benchmark": "predict", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu_name": cpu_name()}, "livercad": str(package), "checkout": checkout(package.parent),
              "shape": list(shape), "volumes": args.volumes, "case_seconds": runs,
              "mean_case_seconds": round(float(np.mean(seconds)), 3)}
    finish(result, f"predict{'_' + args.tag if args.tag else ''}", save=not args.no_save)
    return result


if __name__ == "__main__":
    main()

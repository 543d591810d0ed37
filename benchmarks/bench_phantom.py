"""Benchmark the phantom generator: time ``generate_cohort`` (generation + NIfTI writing) and print JSON.

Target (issue 2): 100 volumes of 128 x 128 x 48 in under 60 s on 2 CPU cores.

Usage::

    python benchmarks/bench_phantom.py [--n 100] [--workers 2] [--modality ct] [--shape 128 128 48]

Prints one JSON object: wall seconds, volumes per second, CPU seconds of this process and its workers,
bytes written and the severity ceiling AUCs (steatosis vs normal, cirrhosis vs normal) of the cohort.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from livercad.phantom import generate_cohort, severity_ceiling_auc


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and return (and print) its JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modality", default="ct", choices=["ct", "mr-t2", "us"])
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 48])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_phantom_") as folder:
        cpu0, start = _cpu_seconds(), time.perf_counter()
        manifest = generate_cohort(folder, n=args.n, modality=args.modality, seed=args.seed,
                                   shape=tuple(args.shape), workers=args.workers)
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu0
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        record: dict[str, object] = {
            "benchmark": "phantom.generate_cohort", "n": args.n, "modality": args.modality,
            "shape": args.shape, "workers": args.workers, "seconds": round(seconds, 3),
            "volumes_per_s": round(args.n / seconds, 3), "cpu_seconds": round(cpu, 3),
            "cpu_seconds_per_volume": round(cpu / args.n, 4), "bytes_written": size,
            "target_seconds": 60.0 * args.n / 100, "meets_target": seconds < 60.0 * args.n / 100,
            "ceiling_auc_steatosis": round(severity_ceiling_auc(manifest, "steatosis"), 4),
            "ceiling_auc_cirrhosis": round(severity_ceiling_auc(manifest, "cirrhosis"), 4),
            "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        }
    json.dump(record, sys.stdout)
    sys.stdout.write("\n")
    return record


if __name__ == "__main__":
    main()

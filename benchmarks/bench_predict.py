"""Seconds per case of ``livercad predict`` itself (``run_pipeline``, the default bundle) on phantom CT volumes.

The whole per-case flow a user runs: read, modality rule, stage 1 with the shipped model, mask write, liver
statistics and the QC picture. One untimed warm-up run first, then ``--reps`` timed runs over the same
volumes (the case records' ``seconds``, and the seconds of stage 1's network in the same run: ``over_model``,
the issue-19 measure of prediction against model time). It imports whichever ``livercad`` is first on
``sys.path``, so the same script times another checkout:
``PYTHONPATH=/path/to/checkout python benchmarks/bench_predict.py``.

Usage:
    python benchmarks/bench_predict.py                              # 2 volumes of 512x512x100, 2 timed runs
    python benchmarks/bench_predict.py --volumes 1 --shape 96x96x24 --reps 1 --no-save
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import cpu_name, finish, make_volumes

import livercad
from livercad.pipeline.predict.run import run_pipeline
from livercad.segment.release import git_commit


@dataclass(frozen=True)
class Timed:
    """One ``run_pipeline`` over the volumes: each case record's ``seconds`` and the network's seconds per case.

    ``model_seconds``: the wall time of stage 1's network (every ``segment_prepared`` call of the run, timed by
    wrapping it for the run's duration) over the number of cases; ``over_model``: mean case seconds over it.
    The records time each case from when its turn came (a case read ahead is not charged for its read), so
    their sum is the run's case loop.
    """

    case_seconds: list[float]
    model_seconds: float

    @property
    def over_model(self) -> float:
        """Mean case seconds / model seconds per case."""
        return float(np.mean(self.case_seconds)) / self.model_seconds


def bundle_config(overrides: list[str]) -> Any:
    """The default bundle's config with ``overrides`` (``inference.qc_images=false`` ...); ``None`` without any."""
    if not overrides:
        return None
    from livercad.config import load_config
    from livercad.models import default_bundle_path

    return load_config(default_bundle_path() / "config.yaml", overrides)


def timed_run(paths: list[Path], out: Path, config: Any = None) -> Timed:
    """One ``run_pipeline`` over ``paths`` (the default bundle), its network timed (:class:`Timed`).

    ``config``: a whole config whose ``inference`` section replaces the bundle's (:func:`bundle_config`).

    Raises:
        RuntimeError: a case failed (its seconds would time a refusal, not a prediction); the reasons, one line.
    """
    import livercad.segment.infer as infer

    real, spent = infer.segment_prepared, [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    infer.segment_prepared = timed
    try:
        res = run_pipeline([str(p) for p in paths], out, progress=False, config=config)
    finally:
        infer.segment_prepared = real
    if res.failures:
        raise RuntimeError("; ".join(str(c.error) for c in res.failures))
    return Timed([round(c.seconds, 3) for c in res.cases], spent[0] / max(len(res.cases), 1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line (module docstring); returns the result dict."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--shape", default="512x512x100", help="phantom volume shape XxYxZ")
    ap.add_argument("--reps", type=int, default=2, help="timed runs over the volumes")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the bundle's config, e.g. inference.read_ahead=false (repeatable)")
    args = ap.parse_args(argv)
    config = bundle_config(args.set)
    shape = tuple(int(s) for s in args.shape.split("x"))
    package = Path(livercad.__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_volumes(args.volumes, shape, Path(tmp))
        try:
            timed_run(paths, Path(tmp) / "warm", config)
            runs = [timed_run(paths, Path(tmp) / f"run{r}", config) for r in range(args.reps)]
        except RuntimeError as exc:
            raise SystemExit(f"bench_predict: a case failed: {exc}") from None
    seconds = [s for run in runs for s in run.case_seconds]
    model = float(np.mean([run.model_seconds for run in runs]))
    result = {"benchmark": "predict", "date": dt.datetime.now().isoformat(timespec="seconds"),
              "machine": {"cpu_name": cpu_name()}, "livercad": str(package), "checkout": git_commit(package.parent),
              "shape": list(shape), "volumes": args.volumes, "overrides": args.set,
              "case_seconds": [run.case_seconds for run in runs],
              "model_seconds": [round(run.model_seconds, 3) for run in runs],
              "mean_case_seconds": round(float(np.mean(seconds)), 3), "mean_model_seconds": round(model, 3),
              "over_model": round(float(np.mean(seconds)) / model, 3)}
    finish(result, f"predict{'_' + args.tag if args.tag else ''}", save=not args.no_save)
    return result


if __name__ == "__main__":
    main()

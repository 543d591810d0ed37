"""Ray engine: cases spread over a Ray cluster, one model copy per worker (actor).

Workers read inputs and write masks/QC images straight into the output folder (any path all nodes see:
shared storage); the driver alone writes the per-case records and the tables, so ``--resume``, the lock
and the output layout are the same as with the local engine. A lost worker is restarted by Ray and its
case retried (``max_restarts`` / ``max_task_retries``); a case that still cannot finish is recorded as
failed, and the batch goes on.

Requires the optional extra: ``pip install livercad[ray]``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from livercad.config import InferenceConfig
from livercad.errors import ConfigError
from livercad.pipeline.inputs import CaseInput
from livercad.pipeline.outputs import RunFolder
from livercad.pipeline.progress import Progress
from livercad.types import CaseResult

log = logging.getLogger(__name__)


class _Worker:
    """Holds one Predictor; created once per actor."""

    def __init__(self, bundle_path: str, inference: dict[str, Any], out_root: str, threads: int) -> None:
        import torch

        from livercad.pipeline.bundle import load_bundle
        from livercad.pipeline.predictor import Predictor

        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor(load_bundle(bundle_path), InferenceConfig(**inference))
        self.folder = RunFolder(out_root)  # paths only; the driver holds the lock

    def process(self, case: dict[str, Any]) -> dict[str, Any]:
        from pathlib import Path

        c = CaseInput(**{**case, "image": Path(case["image"]),
                         "mask": Path(case["mask"]) if case.get("mask") else None})
        return asdict(self.predictor.process(c, self.folder))

    def precision(self) -> str:
        return self.predictor.precision


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("engine 'ray' needs the optional extra: pip install 'livercad[ray]'") from None
    return ray


def _case_dict(c: CaseInput) -> dict[str, Any]:
    d = asdict(c)
    d["image"], d["mask"] = str(c.image), (str(c.mask) if c.mask else None)
    return d


def run_ray(todo: Sequence[CaseInput], predictor_args: tuple[Any, InferenceConfig], folder: RunFolder,
            bar: Progress, *, address: str | None = None, workers: int | None = None) -> tuple[list[CaseResult], str]:
    """Process ``todo`` on Ray actors; returns the results (input order) and the precision used."""
    ray = _import_ray()
    bundle, inference = predictor_args
    if not todo:
        return [], inference.precision
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 configure_logging=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(workers or cpus, len(todo)))
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= n else 0
        actor_cls = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=3, max_task_retries=3)(_Worker)
        env = {"LIVERCAD_RAY_WORKER": "1"}
        actors = [actor_cls.options(runtime_env={"env_vars": env}).remote(
            str(bundle.path), inference.model_dump(), str(folder.root), threads=max(1, cpus // n))
            for _ in range(n)]
        results = _drive(ray, actors, todo, folder, bar)
        precision = ray.get(actors[0].precision.remote())
    finally:
        if started_here and not os.environ.get("LIVERCAD_KEEP_RAY"):
            ray.shutdown()
    return results, precision


def _drive(ray: Any, actors: list[Any], todo: Sequence[CaseInput], folder: RunFolder,
           bar: Progress) -> list[CaseResult]:
    """Keep every actor busy with one case at a time; record results as they stream back."""
    pending: dict[Any, tuple[int, Any]] = {}
    queue = list(enumerate(todo))
    free = list(actors)
    by_index: dict[int, CaseResult] = {}
    while queue or pending:
        while free and queue:
            i, case = queue.pop(0)
            actor = free.pop()
            pending[actor.process.remote(_case_dict(case))] = (i, actor)
        ready, _ = ray.wait(list(pending), num_returns=1)
        ref = ready[0]
        i, actor = pending.pop(ref)
        case = todo[i]
        try:
            result = CaseResult(**ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a worker lost beyond Ray's retries fails only its case
            result = CaseResult(case.case_id, str(case.image), true_label=case.label,
                                error=f"worker failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
        folder.write_record(result)
        by_index[i] = result
        bar.advance(case.case_id, "done" if result.ok else f"FAILED: {result.error}")
        free.append(actor)
    return [by_index[i] for i in range(len(todo))]

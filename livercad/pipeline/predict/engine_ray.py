"""Ray engine: cases spread over a Ray cluster, one model copy per worker (actor).

Workers read inputs and write masks/QC images straight into the output folder (any path all nodes see:
shared storage); the driver alone writes the per-case records and the tables, so ``--resume``, the lock
and the output layout are the same as with the local engine. A worker process that dies is restarted by
Ray and its case retried (``max_restarts`` / ``max_task_retries``); a case that keeps killing its worker is
recorded as failed, a worker lost for good is replaced, and the batch goes on.

Requires the optional extra: ``pip install livercad[ray]``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livercad.config import InferenceConfig
from livercad.errors import CheckpointError, ConfigError, LivercadError
from livercad.io.manifest import ManifestRow
from livercad.pipeline.predict.inputs import CaseInput
from livercad.pipeline.predict.outputs import RunFolder
from livercad.runtime.progress import Progress
from livercad.types import CaseResult

if TYPE_CHECKING:
    from livercad.pipeline.bundle import Bundle
    from livercad.pipeline.predict.predictor import Predictor, StagesUsed

log = logging.getLogger(__name__)

RESTARTS = 3  # per actor: Ray restarts a dead worker process this often
TASK_RETRIES = 3  # per case: Ray re-runs a case whose worker died this often


class RayWorkersLostError(LivercadError):
    """Every Ray worker was lost for good; finished cases are recorded (use ``--resume``)."""


class _Worker:
    """Holds one Predictor; created once per actor. A bundle it cannot load is reported by :meth:`ready`."""

    def __init__(self, bundle_path: str, inference: dict[str, Any], out_root: str, threads: int) -> None:
        import socket

        import torch

        from livercad.pipeline.bundle import load_bundle
        from livercad.pipeline.predict.predictor import Predictor

        torch.set_num_threads(max(1, threads))
        self.host = socket.gethostname()
        self.error: tuple[str, str] | None = None
        self.predictor: Predictor | None = None
        try:
            self.predictor = Predictor(load_bundle(bundle_path), InferenceConfig(**inference))
        except LivercadError as exc:
            self.error = (type(exc).__name__, " ".join(str(exc).split()))
        self.folder = RunFolder(out_root)  # paths only; the driver holds the lock

    def ready(self) -> tuple[StagesUsed | None, tuple[str, str] | None, str]:
        """(what the stages run with, error, host): the model is loaded when error is None."""
        return (None if self.predictor is None else self.predictor.used), self.error, self.host

    def process(self, case: dict[str, Any]) -> dict[str, Any]:
        """Run one case (a :class:`CaseInput` as a dict of plain values, :func:`_case_dict`)."""
        if self.predictor is None:
            raise RuntimeError(f"worker on {self.host} has no model: {self.error}")
        return asdict(self.predictor.process(_case_input(case), self.folder))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("engine 'ray' needs the optional extra: pip install 'livercad[ray]'") from None
    return ray


def _case_dict(c: CaseInput) -> dict[str, Any]:
    """Plain values for the worker; paths made absolute (a worker's working directory is not the driver's)."""
    row = c.row
    return asdict(replace(c, row=replace(row, image=Path(row.image).absolute(),
                                         mask=Path(row.mask).absolute() if row.mask else None)))


def _case_input(d: dict[str, Any]) -> CaseInput:
    """The :class:`CaseInput` of :func:`_case_dict`'s values."""
    return CaseInput(**{**d, "row": ManifestRow(**d["row"])})


def _actor_factory(ray: Any, bundle: Bundle, inference: InferenceConfig, folder: RunFolder,
                   workers: int | None, n_cases: int) -> tuple[Callable[[], Any], int]:
    """A function that starts one worker actor, and how many to start (one GPU each when the cluster has GPUs)."""
    res = ray.cluster_resources()
    cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
    n = max(1, min(workers or gpus or cpus, n_cases))
    threads = max(1, cpus // n)
    actor_cls = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=RESTARTS,
                           max_task_retries=TASK_RETRIES)(_Worker)
    args = (str(Path(bundle.path).absolute()), inference.model_dump(mode="json"), str(folder.root.absolute()))
    log.info("ray: %d workers (%d CPUs, %d GPUs in the cluster), %d threads each", n, cpus, gpus, threads)
    return (lambda: actor_cls.remote(*args, threads=threads)), n


def _ready(ray: Any, actors: list[Any], bundle_path: str) -> StagesUsed:
    """Wait until every worker has loaded the model; raise the first worker's load error."""
    try:
        states = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as exc:  # the worker process could not even be built (e.g. no livercad)
        last = [line for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise ConfigError(f"Ray workers could not start (is livercad installed on every node?): "
                          f"{' '.join(last[0].split())}") from None
    for _, error, host in states:
        if error is not None:
            kind = {"ConfigError": ConfigError, "CheckpointError": CheckpointError}.get(error[0], LivercadError)
            raise kind(f"Ray worker on {host} cannot load the bundle {bundle_path} (it must be on storage every "
                       f"node sees): {error[1]}")
    return states[0][0]


def run_ray(todo: Sequence[CaseInput], predictor_args: tuple[Bundle, InferenceConfig], folder: RunFolder,
            bar: Progress, *, address: str | None = None, workers: int | None = None
            ) -> tuple[list[CaseResult], StagesUsed | None]:
    """Process ``todo`` on Ray actors; returns the results (input order) and what the stages ran with
    (``None`` when there was nothing to run, so no stage was loaded).

    Connects to ``address`` (or ``RAY_ADDRESS``, or starts a local Ray instance for this call) unless Ray is
    already initialised in this process; only an instance started here is shut down at the end.

    Raises:
        ConfigError: Ray is not installed, or the workers cannot build the model.
        CheckpointError: a worker cannot read or verify the bundle.
        RayWorkersLostError: every worker was lost for good (finished cases stay recorded).
    """
    ray = _import_ray()
    bundle, inference = predictor_args
    if not todo:
        return [], None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        make, n = _actor_factory(ray, bundle, inference, folder, workers, len(todo))
        actors = [make() for _ in range(n)]
        used = _ready(ray, actors, str(bundle.path))
        results = _drive(ray, actors, make, todo, folder, bar)
        folder._remove_stale_temps()  # a worker killed while writing leaves its temporary file behind
    finally:
        if started_here:
            ray.shutdown()
    return results, used


def _failed(case: CaseInput, reason: str) -> CaseResult:
    row = case.row
    return CaseResult(row.case_id, str(row.image), true_label=row.label, error=" ".join(reason.split())[:400])


def _collect(ray: Any, ref: Any, case: CaseInput, actor: Any) -> tuple[CaseResult, bool]:
    """A finished task's record, and whether its actor is still usable."""
    try:
        return CaseResult(**{**ray.get(ref), "input_path": str(case.row.image)}), True
    except ray.exceptions.RayActorError as exc:
        log.warning("case %s: its Ray worker died %d times, recording it as failed", case.row.case_id,
                    TASK_RETRIES + 1)
        reason = f"worker lost {TASK_RETRIES + 1} times while processing this case ({type(exc).__name__})"
        return _failed(case, reason), _alive(ray, actor)
    except ray.exceptions.RayTaskError as exc:  # an unexpected error inside the worker fails only its case
        cause = exc.cause if exc.cause is not None else exc
        return _failed(case, f"{type(cause).__name__}: {cause}"), True


def _alive(ray: Any, actor: Any) -> bool:
    """True when ``actor`` answers (after a restart, if Ray is restarting it)."""
    try:
        ray.get(actor.ready.remote())
    except ray.exceptions.RayActorError:
        return False
    return True


def _drive(ray: Any, actors: list[Any], make: Callable[[], Any], todo: Sequence[CaseInput], folder: RunFolder,
           bar: Progress) -> list[CaseResult]:
    """Keep every actor busy with one case at a time; record results as they stream back.

    An actor lost for good (its restarts used up) is replaced by a new one, at most ``len(actors)`` times.
    """
    queue, free = deque(enumerate(todo)), list(actors)
    pending: dict[Any, tuple[int, Any]] = {}
    by_index: dict[int, CaseResult] = {}
    spares = len(actors)
    while queue or pending:
        while free and queue:
            i, case = queue.popleft()
            actor = free.pop()
            pending[actor.process.remote(_case_dict(case))] = (i, actor)
        if not pending:
            raise RayWorkersLostError(f"all Ray workers were lost; {len(by_index)} of {len(todo)} cases recorded in "
                                      f"{folder.root}; run again with --resume to finish the rest")
        [ref], _ = ray.wait(list(pending), num_returns=1)
        i, actor = pending.pop(ref)
        result, usable = _collect(ray, ref, todo[i], actor)
        folder.write_record(result)
        by_index[i] = result
        bar.advance(result.case_id, "done" if result.ok else f"FAILED: {result.error}")
        while not usable and spares > 0:  # a replacement joins once it has loaded the model
            spares -= 1
            actor = make()
            usable = _alive(ray, actor)
        if usable:
            free.append(actor)
    return [by_index[i] for i in range(len(todo))]

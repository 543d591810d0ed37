"""Resumable Lightning training for both stages: an atomic, weights-only ``last.ckpt``.

Stage 1 (:func:`livercad.segment.fit.train_segmenter`) and stage 2
(:func:`livercad.classify.fit.train_classifier`) write ``<out>/lightning/checkpoints/last.ckpt`` at
most every ``every_s`` seconds of training, at the end of a step or of a validation, mid-epoch included
(:class:`LastCheckpoint`); with ``resume=True`` they continue from it through
``trainer.fit(ckpt_path=...)`` (weights, optimiser, LR schedule, step/epoch counters, early stopping,
the best weights so far, the history and the time already spent).

* **Atomic**: :class:`SafeCheckpointIO` writes every Lightning checkpoint through
  :func:`livercad.io.atomic.atomic_write` (temporary file next to the destination, fsync, rename).
  Lightning's own writer uses an fsspec transaction whose temporary file lives in the system temp
  folder; on another file system its final move is a copy that a kill can leave half-written.
* **Safe**: checkpoints are always read with ``torch.load(weights_only=True)``, whatever Lightning
  asks for, so a crafted file cannot run code; any refusal is a :class:`~livercad.errors.CheckpointError`.
* **Same run**: every checkpoint carries a fingerprint of what shapes the run (model, data, optimiser,
  seed, cases); resuming under a different one is refused, naming the keys that differ. The budget and
  hardware keys in :data:`RUNTIME_KEYS` may change between the runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from livercad.errors import CheckpointError
from livercad.io.atomic import atomic_write
from livercad.runtime.checkpoint import load_checkpoint, torch_load_safe

logger = logging.getLogger(__name__)

LAST = "last.ckpt"
LAST_EVERY_S = 120.0  # default interval between two writes of last.ckpt (a U-Net/ResNet one is ~0.4 GB)
FINGERPRINT_KEY = "livercad_run"
RUNTIME_KEYS = frozenset({"max_minutes", "max_epochs", "patience", "accelerator", "devices", "num_nodes",
                          "strategy", "num_workers"})


def fingerprint(**parts: Any) -> dict[str, Any]:
    """JSON-normalised description of a run (what must not change on resume).

    Example:
        >>> fingerprint(seed=1, train={"lr": 0.1, "max_minutes": 4.0})
        {'seed': 1, 'train': {'lr': 0.1}}
    """
    out = json.loads(json.dumps(parts, sort_keys=True, default=str))
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if k not in RUNTIME_KEYS}
    return out


def fingerprint_hash(fp: Mapping[str, Any]) -> str:
    """sha256 of a fingerprint (stored in exported checkpoints as ``meta["resume_key"]``)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two fingerprints.

    Example:
        >>> differing_keys({"train": {"lr": 1, "seed": 0}}, {"train": {"lr": 2, "seed": 0}})
        ['train.lr']
    """
    fa, fb = _flat(dict(a)), _flat(dict(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that writes atomically and only ever loads with ``weights_only=True``.

    Args:
        fingerprint: the run's :func:`fingerprint`; stored in every checkpoint written and required to
            match on load (``None``: neither stored nor checked).
    """

    def __init__(self, fingerprint: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fingerprint = dict(fingerprint) if fingerprint is not None else None

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` (plus the fingerprint) atomically to ``path``."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options")
        payload = checkpoint if self.fingerprint is None else {**checkpoint, FINGERPRINT_KEY: self.fingerprint}
        atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))

    def load_checkpoint(self, path: Any, map_location: Any = "cpu", weights_only: bool | None = None
                        ) -> dict[str, Any]:
        """Read a checkpoint without unpickling arbitrary objects (``weights_only`` is always ``True``).

        Raises:
            CheckpointError: missing, unsafe or corrupt file, or written by a different run.
        """
        p = Path(path)
        ckpt = torch_load_safe(p, map_location=map_location, what="training checkpoint")
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{p}: not a training checkpoint (got {type(ckpt).__name__})")
        if self.fingerprint is not None:
            found = ckpt.get(FINGERPRINT_KEY)
            if not isinstance(found, dict):
                raise CheckpointError(f"{p}: cannot resume: not a livercad training checkpoint (no run fingerprint)")
            diff = differing_keys(self.fingerprint, found)
            if diff:
                shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
                raise CheckpointError(f"{p}: cannot resume: written by a different run ({shown} differ); "
                                      "use the original settings, or drop --resume to start afresh")
        return ckpt


class LastCheckpoint(Checkpoint):
    """Write ``path`` at most every ``every_s`` seconds: at the first step or validation end due.

    It goes through ``trainer.save_checkpoint`` (so through the trainer's :class:`SafeCheckpointIO`);
    as a :class:`~lightning.pytorch.callbacks.Checkpoint` Lightning runs it after the other callbacks,
    so the state it saves includes their updates of the same step.
    """

    def __init__(self, path: str | Path, every_s: float = LAST_EVERY_S) -> None:
        self.path, self.every_s, self._t = Path(path), float(every_s), time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._save_if_due(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._save_if_due(trainer)

    def _save_if_due(self, trainer: pl.Trainer) -> None:
        due = time.monotonic() - self._t >= self.every_s
        if trainer.strategy.broadcast(due):  # every rank must take the same decision (barrier inside)
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: weights, optimiser, loops
            self._t = time.monotonic()


def resume_point(folder: str | Path, resume: bool) -> Path | None:
    """The ``last.ckpt`` to continue from (``None``: start afresh); removes stale temporary files.

    Asking to resume where nothing was saved yet logs a warning and starts from the beginning.
    """
    folder = Path(folder)
    for tmp in folder.glob(".*.tmp*.ckpt"):  # left by a run killed while writing
        tmp.unlink(missing_ok=True)
    last = folder / LAST
    if resume and last.is_file():
        logger.info("resuming from %s", last)
        return last
    if resume:
        logger.warning("%s: no checkpoint to resume from; training from the start", last)
    elif last.is_file():
        logger.info("%s exists; starting a new run (resume=True / --resume continues it)", last)
    return None


def checkpoint_dir(out_dir: str | Path) -> Path:
    """Where a stage training in ``out_dir`` keeps its Lightning checkpoints: ``<out_dir>/lightning/checkpoints``."""
    return Path(out_dir) / "lightning" / "checkpoints"


def plan_resume(export: str | Path, fp: Mapping[str, Any], resume: bool) -> tuple[bool, Path | None]:
    """How a stage exporting ``export`` (its run fingerprint ``fp``) starts: ``(done, last_ckpt)``.

    ``done`` is true when ``resume`` is asked and ``export`` is already this run's finished export (nothing is
    trained again); otherwise ``last_ckpt`` is the checkpoint to continue from in :func:`checkpoint_dir` of
    the export's folder (:func:`resume_point`, ``None``: from the start).
    """
    export = Path(export)
    if resume and finished(export, fingerprint_hash(fp)):
        logger.info("%s is this run's finished export; nothing to resume", export)
        return True, None
    return False, resume_point(checkpoint_dir(export.parent), resume)


def finished(path: str | Path, key: str) -> bool:
    """Whether ``path`` is an exported checkpoint of the run whose fingerprint hash is ``key``."""
    if not Path(path).is_file():
        return False
    try:
        return load_checkpoint(path)[1].get("resume_key") == key
    except CheckpointError:
        return False


__all__ = ["LAST", "LAST_EVERY_S", "RUNTIME_KEYS", "LastCheckpoint", "SafeCheckpointIO", "checkpoint_dir",
           "differing_keys", "finished", "fingerprint", "fingerprint_hash", "plan_resume", "resume_point"]

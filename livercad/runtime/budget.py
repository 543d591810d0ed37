"""Wall-clock training budget and learning-rate schedule shared by both training stages.

:class:`TimeBudget` (a Lightning callback) stops a run early enough that its closing validation still fits
in the budget and tells the schedule where it is; :func:`lr_factor` is the warm-up + cosine multiplier.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

_TIME_SLACK = 0.05  # share of the time budget a run may lag its step schedule before the LR follows time


def lr_factor(progress: float, warmup: float = 0.05, floor: float = 0.02) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1]: linear warm-up then cosine down to ``floor``.

    Example:
        >>> round(lr_factor(0.0), 3), round(lr_factor(0.05), 3), round(lr_factor(1.0), 3)
        (0.1, 1.0, 0.02)
    """
    p = min(max(progress, 0.0), 1.0)
    if p < warmup:
        return 0.1 + 0.9 * p / warmup
    cos = 0.5 * (1.0 + math.cos(math.pi * (p - warmup) / (1.0 - warmup)))
    return floor + (1.0 - floor) * cos


class TimeBudget(Callback):
    """Stops training early enough that the closing validation still fits in ``budget_s``.

    The closing validation is estimated from the last one measured, or before any from the mean step
    time (a validation batch is forward-only on twice the training batch: about 0.8 of a training step).
    The check runs after every training step and after every validation: a scheduled (epoch-end)
    validation that leaves no room for one more step and another validation ends the run itself, instead
    of one more step followed by a closing validation past the budget.
    Also gives the LR schedule its position (:meth:`progress`). Its state (training time, steps) is
    saved in Lightning checkpoints, so a resumed run continues the same budget.
    """

    def __init__(self, budget_s: float, n_val_batches: int, total_steps: int) -> None:
        self.budget_s, self.n_val_batches, self.total_steps = budget_s, n_val_batches, max(total_steps, 1)
        self.t0, self.steps, self.val_s, self.last_val_s, self._v0 = time.monotonic(), 0, 0.0, None, 0.0
        self.stopped = self.time_bound = False
        self.fit_s, self.offset, self.run_steps = 0.0, 0.0, 0  # offset: training time before a resume

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _step_s(self) -> float:
        return (self.elapsed() - self.val_s) / max(self.steps, 1)

    def deadline(self) -> float:
        val = self.last_val_s if self.last_val_s is not None else 0.8 * self.n_val_batches * self._step_s()
        return self.budget_s - val

    def progress(self, step: int) -> float:
        """Schedule position: by steps, unless the run lags the pace needed to finish its steps before the
        deadline by > 5 % (then by time, so the LR still anneals; ``time_bound`` records it)."""
        by_steps, by_time = step / self.total_steps, self.elapsed() / max(self.deadline(), 1e-6)
        if by_time > by_steps + _TIME_SLACK:
            self.time_bound = True
            return by_time
        return by_steps

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed(), "steps": self.steps, "val_s": self.val_s, "last_val_s": self.last_val_s,
                "time_bound": self.time_bound}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.offset, self.steps, self.val_s = float(state["elapsed"]), int(state["steps"]), float(state["val_s"])
        self.last_val_s, self.time_bound = state["last_val_s"], bool(state["time_bound"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.t0 = time.monotonic() - self.offset

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_s = self.elapsed()

    def _stop_if_due(self, trainer: L.Trainer) -> None:
        """Stop when one more step and a closing validation would no longer fit in the budget."""
        stop = self.elapsed() + self._step_s() >= self.deadline()
        if getattr(trainer, "world_size", 1) > 1:  # DDP: every rank takes rank 0's decision, or one would hang
            stop = bool(trainer.strategy.broadcast(stop))
        if stop:
            trainer.should_stop = self.stopped = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.steps, self.run_steps = self.steps + 1, self.run_steps + 1
        self._stop_if_due(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._v0 = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_val_s = time.monotonic() - self._v0
        self.val_s += self.last_val_s
        if self.steps:  # a scheduled validation ate the room for another step + closing validation: it was the last
            self._stop_if_due(trainer)


__all__ = ["TimeBudget", "lr_factor"]

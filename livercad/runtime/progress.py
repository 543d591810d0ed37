"""Progress reporting: rich progress bars with ETA on a terminal, one plain line per event otherwise.

:class:`Progress` counts finished items (cases, ablation trainings); :class:`TrainingBar` (given to
Lightning by :func:`training_progress`) shows a training's steps, its validation score and what is left of
its wall-clock budget. On a terminal they draw a rich bar; otherwise each event is one INFO line on the
``livercad.progress`` logger. The command line hands over its console with :func:`configure` (its log
lines then print above the bars) and says whether Lightning's own progress bar and model summary are
wanted instead (``--verbose``).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from types import TracebackType
from typing import Any

log = logging.getLogger("livercad.progress")

# set by the command line (livercad.runtime.terminal): its rich console, and whether Lightning draws its own bar
_settings: dict[str, Any] = {"console": None, "lightning": None}


def configure(console: Any = None, *, lightning_output: bool | None = None) -> None:
    """Draw bars on ``console`` (a ``rich.console.Console``; ``None``: one on stderr, a bar only on a tty).

    ``lightning_output``: ``True`` Lightning's own progress bar and model summary instead of livercad's
    training bar; ``False`` never; ``None`` (the library default) whenever progress is on.
    """
    _settings.update(console=console, lightning=lightning_output)


def _console() -> Any:
    if _settings["console"] is not None:
        return _settings["console"]
    from rich.console import Console

    return Console(stderr=True, force_terminal=sys.stderr.isatty())


def duration(seconds: float) -> str:
    """A short duration for a progress line.

    Example:
        >>> duration(28.4), duration(192)
        ('28 s', '3 min 12 s')
    """
    s = max(int(round(seconds)), 0)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60} s"


def _rich_bar(console: Any, *columns: Any) -> Any:
    from rich.progress import Progress as RichProgress

    bar = RichProgress(*columns, console=console, transient=False)
    bar.start()
    return bar


class Progress:
    """Counts finished items; a bar with ETA when ``enabled`` and the console is a terminal, else log lines.

    Example:
        >>> with Progress(2, enabled=False) as p:
        ...     p.advance("a"); p.advance("b")
        >>> p.done
        2
    """

    def __init__(self, total: int, *, enabled: bool = True, description: str = "cases") -> None:
        self.total = total
        self.done = 0
        self.description = description
        self._enabled = enabled
        self._bar: Any = None
        self._task: Any = None
        self._t0 = self._t1 = time.perf_counter()

    def __enter__(self) -> Progress:
        self._t0 = time.perf_counter()
        console = _console() if self._enabled and self.total > 0 else None
        if console is not None and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            self._bar = _rich_bar(console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[item]}"))
            self._task = self._bar.add_task(self.description, total=self.total, item="")
        return self

    def advance(self, case_id: str, status: str = "done") -> None:
        """Record one finished item (``status`` other than ``done`` is also printed as its own line)."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, item=case_id)
            if status != "done":
                log.info("%s %s", case_id, status)
        elif self._enabled:  # the pace from the first item on (the first one also paid for loading)
            now = time.perf_counter()
            self._t1 = now if self.done == 1 else self._t1
            per_item = (now - self._t0) if self.done == 1 else (now - self._t1) / (self.done - 1)
            eta = per_item * (self.total - self.done)
            log.info("%s [%d/%d] %s %s (eta %s)", self.description, self.done, self.total, case_id, status,
                     duration(eta))

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class TrainingBar:
    """The hooks of a Lightning callback that shows a training: steps, last validation, budget left.

    ``budget`` is the run's :class:`~livercad.runtime.budget.TimeBudget` (``budget_s``, ``elapsed()``,
    ``total_steps``); the bar fills with whichever of steps and time runs out first. Without a terminal,
    one line per validation and one at the end. Only rank 0 of a distributed run reports.
    """

    def __init__(self, budget: Any, description: str) -> None:
        self.budget, self.description = budget, description
        self.note = ""
        self._bar: Any = None
        self._task: Any = None
        self._on = False

    def _state(self, step: int) -> dict[str, Any]:
        total, left = self.budget.total_steps, max(self.budget.budget_s - self.budget.elapsed(), 0.0)
        done = max(step / total, min(self.budget.elapsed() / max(self.budget.budget_s, 1e-9), 1.0))
        return {"completed": min(done, 1.0), "step": f"{step}/{total}", "left": duration(left), "note": self.note}

    def on_train_start(self, trainer: Any, module: Any) -> None:
        self._on = bool(trainer.is_global_zero)
        console = _console() if self._on else None
        if console is not None and console.is_terminal:
            from rich.progress import BarColumn, TextColumn

            self._bar = _rich_bar(console, TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("step {task.fields[step]}"), TextColumn("{task.fields[note]}"),
                                  TextColumn("budget left {task.fields[left]}"))
            self._task = self._bar.add_task(self.description, total=1.0, **self._state(trainer.global_step))

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, **self._state(trainer.global_step))

    def on_validation_end(self, trainer: Any, module: Any) -> None:
        if not self._on or trainer.sanity_checking:
            return
        scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        self.note = ", ".join(f"{k} {v:.3f}" for k, v in sorted(scores.items()))
        state = self._state(trainer.global_step)
        if self._bar is not None:
            self._bar.update(self._task, **state)
        else:
            log.info("%s: step %s, %s; budget left %s", self.description, state["step"], self.note or "validated",
                     state["left"])

    def on_train_end(self, trainer: Any, module: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=1.0)
        elif self._on:
            log.info("%s: finished at step %d after %s", self.description, trainer.global_step,
                     duration(self.budget.elapsed()))
        self._close()

    def on_exception(self, trainer: Any, module: Any, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: Any, module: Any, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@functools.cache
def _callback_class() -> type:
    from lightning.pytorch.callbacks import Callback

    return type("TrainingProgress", (TrainingBar, Callback), {"__module__": __name__})


def training_progress(callbacks: list[Any], *, enabled: bool, description: str) -> tuple[list[Any], bool]:
    """``callbacks`` plus livercad's training bar, and whether Lightning shows its own bar and summary.

    The bar reads the :class:`~livercad.runtime.budget.TimeBudget` among ``callbacks``. With ``enabled``
    false nothing is shown; Lightning's own output replaces the bar when :func:`configure` asked for it
    (``--verbose``) or was never called (library use).
    """
    from livercad.runtime.budget import TimeBudget

    lightning_own = enabled and _settings["lightning"] is not False
    budget = next((c for c in callbacks if isinstance(c, TimeBudget)), None)
    if not enabled or lightning_own or budget is None:
        return list(callbacks), lightning_own
    return [*callbacks, _callback_class()(budget, description)], False


__all__ = ["Progress", "TrainingBar", "configure", "duration", "training_progress"]

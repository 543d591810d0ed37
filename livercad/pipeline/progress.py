"""Progress reporting: a rich progress bar with ETA on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

log = logging.getLogger("livercad.progress")


class Progress:
    """Counts finished cases; draws a bar when ``enabled`` and stderr is a terminal.

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
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()
        self._use_bar = enabled and sys.stderr.isatty()
        self._log = enabled

    def __enter__(self) -> Progress:
        if self._use_bar:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, case_id: str, status: str = "done") -> None:
        """Record one finished case."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{self.description} ({case_id})")
        elif self._log:
            rate = (time.perf_counter() - self._t0) / max(self.done, 1)
            eta = rate * (self.total - self.done)
            log.info("[%d/%d] %s %s (eta %.0f s)", self.done, self.total, case_id, status, eta)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

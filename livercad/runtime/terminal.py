"""The command line's terminal: one log handler, library warnings into the run's log file, progress style.

Only :mod:`livercad.cli` uses this module; library code never configures logging or warnings.

- The root logger gets one handler for the screen: on a terminal it prints through a rich console that the
  progress bars share (lines print above the bars), otherwise plain lines on stderr. Lightning's handlers
  are removed and its loggers propagate to the root (``import lightning`` adds a stderr handler of its
  own: every Lightning line came twice); its "💡 Tip" lines are dropped unless ``--verbose``.
- Python warnings (``logging.captureWarnings``) and other libraries' WARNING records go to the run's log
  file ``<out>/livercad.log`` only, next to every INFO record (the file is opened at its first record), and
  are counted for the final summary (:meth:`Terminal.note`).
- Verbosity on the screen: ``quiet`` errors only; ``normal`` progress lines, livercad's warnings, errors
  and the distributed-setup line of each Lightning process; ``verbose`` every INFO record (livercad's and
  Lightning's) and Lightning's own progress bar and model summary. Python warnings never reach it.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from livercad.runtime import progress

LOG_NAME = "livercad.log"
QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
_LIGHTNING = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
_TIPS = tuple(f"{name}.utilities.rank_zero" for name in _LIGHTNING[1:])  # where Lightning logs its tips
_SHOWN = ("lightning.fabric.utilities.distributed", "lightning_fabric.utilities.distributed")  # rank k of n
_PLAIN = logging.Formatter("%(message)s")
_NAMED = logging.Formatter("%(levelname)s %(name)s: %(message)s")
_FILE = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
_SUMMARY_CODES = (0, 3)  # the CLI's exit codes of a finished run (all done / some cases failed)


def verbosity(quiet: bool, verbose: bool) -> str:
    """``quiet`` | ``normal`` | ``verbose`` from the two flags (``--quiet`` wins).

    Example:
        >>> verbosity(False, False), verbosity(True, False), verbosity(False, True)
        ('normal', 'quiet', 'verbose')
    """
    return QUIET if quiet else VERBOSE if verbose else NORMAL


def _ours(name: str) -> bool:
    return name == "livercad" or name.startswith("livercad.")


def library_warning(record: logging.LogRecord) -> bool:
    """A Python warning or another library's WARNING record: what the final summary counts."""
    return record.name == "py.warnings" or (logging.WARNING <= record.levelno < logging.ERROR
                                            and not _ours(record.name))


class _Shown(logging.Filter):
    """What reaches the screen at a verbosity."""

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or self.level == VERBOSE:
            return True
        if self.level == QUIET:
            return False
        if _ours(record.name):
            return record.levelno >= logging.WARNING or record.name == progress.log.name
        return record.name in _SHOWN


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


class _ScreenFormat(logging.Formatter):
    """INFO lines as they are; warnings and errors with their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        return (_PLAIN if record.levelno < logging.WARNING else _NAMED).format(record)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Plain lines on whatever ``sys.stderr`` is when a record comes (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


class _ConsoleHandler(logging.Handler):
    """Lines through the rich console the progress bars use: they print above a running bar."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        try:
            self.console.print(Text(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


class _RunLog(logging.Handler):
    """Every record into ``path`` (opened, folder created, at the first one; appended); counts library warnings."""

    def __init__(self, path: Path | None, header: str) -> None:
        super().__init__(logging.INFO)
        self.path, self.header, self.count = path, header, 0
        self._file: TextIO | None = None
        self.setFormatter(_FILE)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.count += library_warning(record)
            if self.path is None:
                return
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
                self._file.write(f"---- {self.header}\n")
            self._file.write(self.format(record).rstrip("\n") + "\n")
            self._file.flush()
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


class Terminal:
    """Logging, warnings and progress of one command (a context manager; leaving it undoes the set-up).

    Args:
        level: ``quiet`` | ``normal`` | ``verbose`` (:func:`verbosity`).
        log_dir: the run's output folder: ``<log_dir>/livercad.log`` receives the log and the library
            warnings; ``None``: warnings are only counted.
        lightning: import Lightning first (commands that train), so that its handlers can be removed.
        header: first line of this run in the log file (e.g. the command line).
    """

    def __init__(self, level: str = NORMAL, log_dir: Path | None = None, *, lightning: bool = False,
                 header: str = "livercad") -> None:
        from rich.console import Console

        self.level, self.lightning = level, lightning
        self.log_path = Path(log_dir) / LOG_NAME if log_dir is not None else None
        self.console = Console(stderr=True, force_terminal=sys.stderr.isatty())
        self.screen: logging.Handler = _ConsoleHandler(self.console) if self.console.is_terminal else _StderrHandler()
        self.screen.addFilter(_Shown(level))
        self.screen.setFormatter(_ScreenFormat())
        self.run_log = _RunLog(self.log_path, header)
        self._undo: list[Callable[[], None]] = []

    def _swap(self, obj: Any, attr: str, value: Any) -> None:
        old = getattr(obj, attr)
        self._undo.append(lambda: setattr(obj, attr, old))
        setattr(obj, attr, value)

    def __enter__(self) -> Terminal:
        root = logging.getLogger()
        kept = [h for h in root.handlers if not _replaceable(h)]  # e.g. a test runner's capture stays
        self._swap(root, "handlers", [*kept, self.screen, self.run_log])
        old_level = root.level
        root.setLevel(logging.INFO)
        self._undo.append(lambda: root.setLevel(old_level))
        self._tame_lightning()
        logging.captureWarnings(True)
        self._undo.append(lambda: logging.captureWarnings(False))
        warned = logging.getLogger("py.warnings")
        self._swap(warned, "handlers", [self.run_log])
        self._swap(warned, "propagate", False)
        progress.configure(self.console, lightning_output=self.level == VERBOSE)
        self._undo.append(progress.configure)
        return self

    def _tame_lightning(self) -> None:
        """Lightning's loggers: no handlers of their own, records to the root; tips dropped unless verbose.

        ``import lightning`` adds a handler of its own: when it was not imported yet (a training command resolves
        its weights first, in seconds, without importing it), that handler is refused while this terminal lasts.
        """
        for name in _LIGHTNING:
            lg = logging.getLogger(name)
            self._swap(lg, "handlers", [])
            self._swap(lg, "propagate", True)
            if self.lightning and name not in sys.modules:  # its import comes later, inside this terminal
                lg.addHandler = _refuse_handler  # type: ignore[method-assign]
                self._undo.append(lambda lg=lg: vars(lg).pop("addHandler", None))
        if self.level != VERBOSE:
            tips = _NoTips()
            for name in _TIPS:
                logging.getLogger(name).addFilter(tips)
                self._undo.append(lambda lg=logging.getLogger(name): lg.removeFilter(tips))

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self.run_log.close()
        self.screen.close()

    @property
    def warnings(self) -> int:
        """Library warnings seen so far (Python warnings and other libraries' WARNING records)."""
        return self.run_log.count

    def note(self) -> str:
        """``"3 library warnings, see out/livercad.log"`` for the summary; ``""`` when there were none."""
        n = self.run_log.count
        if not n:
            return ""
        where = f"see {self.log_path}" if self.log_path is not None else "not kept (no output folder)"
        return f"{n} library warning{'s' if n != 1 else ''}, {where}"


def command(*, log: bool = True, lightning: bool = False) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator of the CLI commands: run one inside a :class:`Terminal` set from its ``quiet``, ``verbose``
    and ``out`` arguments (``log=False``: no log file) and end its summary with :meth:`Terminal.note`
    (on stderr, after a normal end: exit code 0 or 3)."""

    def wrap(cmd: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(cmd)
        def run(**kw: Any) -> None:
            import typer

            with Terminal(verbosity(kw["quiet"], kw["verbose"]), kw["out"] if log else None, lightning=lightning,
                          header=" ".join(["livercad", *sys.argv[1:]])) as term:
                try:
                    cmd(**kw)
                except typer.Exit as exc:
                    if exc.exit_code in _SUMMARY_CODES and term.note():
                        typer.echo(term.note(), err=True)
                    raise
                if term.note():
                    typer.echo(term.note(), err=True)

        return run

    return wrap


def _refuse_handler(handler: logging.Handler) -> None:
    """``Logger.addHandler`` of Lightning's loggers inside a :class:`Terminal`: records go to the root only."""


def _replaceable(handler: logging.Handler) -> bool:
    """A handler this module installed earlier, or a plain stream handler on stderr/stdout (``basicConfig``)."""
    if isinstance(handler, (_StderrHandler, _ConsoleHandler, _RunLog)):
        return True
    streams = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    return type(handler) is logging.StreamHandler and handler.stream in streams


__all__ = ["LOG_NAME", "Terminal", "command", "library_warning", "verbosity"]

"""Package exceptions.

Every error a user can cause is a :class:`LivercadError`; the CLI maps them to exit codes
(``InputError``/``ConfigError``/``CheckpointError`` -> 2 when they stop the whole run; inside a
batch an ``InputError`` only fails its case). Messages are one line: what was expected, what
arrived, which file/row/key, and how to fix it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path


class LivercadError(Exception):
    """Base class of every error raised on purpose by livercad."""


class InputError(LivercadError, ValueError):
    """Bad input data: a file that cannot be read, a wrong shape, a bad manifest row.

    Args:
        path: The offending file (or manifest); included at the start of the message.
        reason: One line saying what was expected and what arrived.

    Example:
        >>> str(InputError("a.nii.gz", "expected a 3-D volume, got shape (4, 4, 4, 2)"))
        'a.nii.gz: expected a 3-D volume, got shape (4, 4, 4, 2)'
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        self.path = None if path is None else str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(self.reason if self.path is None else f"{self.path}: {self.reason}")


class ConfigError(LivercadError, ValueError):
    """An invalid configuration: unknown key, wrong type, unknown model name."""


class CheckpointError(LivercadError):
    """A checkpoint or model bundle that is missing, corrupt, unsafe or does not match the config."""


class WeightsUnavailableError(CheckpointError):
    """ImageNet weights neither on disk nor downloadable (offline, no route, failed download)."""


def _edits(a: str, b: str) -> int:
    """Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def did_you_mean(name: str, options: list[str]) -> str:
    """``"did you mean 'x'? "`` for the closest option, or ``""`` when none is close (for ConfigError messages).

    Candidates are difflib's close matches (ratio >= 0.6); the one with the fewest edits wins, ties going
    to the longer common prefix, then to difflib's order.

    Example:
        >>> did_you_mean("resnet35", ["resnet50", "resnet34"]), did_you_mean("qqqq", ["resnet50"])
        ("did you mean 'resnet34'? ", '')
    """
    text = str(name)
    near = difflib.get_close_matches(text, options, n=8, cutoff=0.6)
    if not near:
        return ""
    best = min(near, key=lambda o: (_edits(text, o), -len(os.path.commonprefix([text, o]))))
    return f"did you mean '{best}'? "


# Alias named in the foundation issue.
LivercadInputError = InputError

__all__ = ["LivercadError", "InputError", "LivercadInputError", "ConfigError", "CheckpointError", "did_you_mean",
           "WeightsUnavailableError"]

"""Package exceptions.

Every error a user can cause is a :class:`LivercadError`; the CLI maps them to exit codes
(``InputError``/``ConfigError``/``CheckpointError`` -> 2 when they stop the whole run; inside a
batch an ``InputError`` only fails its case). Messages are one line: what was expected, what
arrived, which file/row/key, and how to fix it.
"""

from __future__ import annotations

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


# Alias named in the foundation issue.
LivercadInputError = InputError

__all__ = ["LivercadError", "InputError", "LivercadInputError", "ConfigError", "CheckpointError"]

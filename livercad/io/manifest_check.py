"""What a manifest row may hold, and its validation: every problem of a file in ONE error.

* ``case_id``: safe as a file name (:func:`safe_case_id`).
* ``split``: one of :data:`SPLITS` or empty.
* ``label``: one of the configured classes, when given (a close match is suggested).
* ``liver_labels`` (an extra column): comma-separated integers or empty (:func:`parse_liver_labels`).
* ``image`` / ``mask`` files, and those of ``image_<phase>`` columns, exist (``check_files``); case ids are unique.

:func:`livercad.io.manifest.read_manifest` runs these checks on every file it reads; converters run
:func:`validate_rows` on the rows they build before writing a manifest.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from livercad.errors import InputError

if TYPE_CHECKING:
    from livercad.io.manifest import ManifestRow

SPLITS = ("train", "val", "test")
MAX_CASE_ID_LENGTH = 128
_FORBIDDEN = '/\\<>:"|?*'


def _case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` is unsafe as a file name, or None when it is fine."""
    if not case_id:
        return "empty case_id"
    if len(case_id) > MAX_CASE_ID_LENGTH:
        return f"case_id longer than {MAX_CASE_ID_LENGTH} characters ({len(case_id)})"
    if case_id != case_id.strip():
        return f"case_id {case_id!r} has leading or trailing spaces"
    if case_id.startswith("."):
        return f"case_id {case_id!r} starts with '.'"
    if ".." in case_id:
        return f"case_id {case_id!r} contains '..'"
    bad = sorted({c for c in case_id if c in _FORBIDDEN or ord(c) < 32 or ord(c) == 127})
    if bad:
        return f"case_id {case_id!r} contains characters unsafe in file names: {' '.join(map(repr, bad))}"
    return None


def safe_case_id(case_id: str) -> str:
    """Return ``case_id`` when it is safe as a file name, else raise.

    Unsafe: empty, longer than 128 characters, leading/trailing spaces, a leading ``.``, ``..``,
    path separators ``/`` ``\\``, characters Windows forbids (``<>:"|?*``) and control characters.

    Raises:
        InputError: naming the id and the reason.

    Example:
        >>> safe_case_id("liver_007")
        'liver_007'
    """
    problem = _case_id_problem(case_id)
    if problem:
        raise InputError(None, f"{problem}; use letters, digits, '-', '_' or '.'")
    return case_id


def parse_liver_labels(text: str | None) -> tuple[int, ...] | None:
    """Parse an ``extra['liver_labels']`` value such as ``"1,2"``; empty means "every label > 0".

    Raises:
        InputError: when the text is not a comma-separated list of integers.

    Example:
        >>> parse_liver_labels("1, 2"), parse_liver_labels("")
        ((1, 2), None)
    """
    if text is None or not text.strip():
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(None, f"liver_labels {text!r} is not a comma-separated list of integers") from None


def _one_row_problems(row: ManifestRow, classes: Sequence[str] | None, check_files: bool) -> list[str]:
    from livercad.io.manifest import is_image_column

    problems = [p for p in [_case_id_problem(row.case_id)] if p]
    if row.split is not None and row.split not in SPLITS:
        problems.append(f"split {row.split!r} (expected train, val, test or empty)")
    if classes is not None and row.label is not None and row.label not in classes:
        close = difflib.get_close_matches(row.label, list(classes), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"unknown label {row.label!r} (expected one of {', '.join(classes)}){hint}")
    if check_files:
        problems += [f"{what} file not found: {p}" for what, p in (("image", row.image), ("mask", row.mask))
                     if p is not None and not (Path(p).is_file() or (what == "image" and Path(p).is_dir()))]
        problems += [f"{k} file not found: {v}" for k, v in row.extra.items()
                     if v and is_image_column(k) and not (Path(v).is_file() or Path(v).is_dir())]
    try:
        parse_liver_labels(row.extra.get("liver_labels"))
    except InputError as exc:
        problems.append(exc.reason)
    return problems


def validate_rows(rows: Sequence[ManifestRow], source: str | Path, *, classes: Sequence[str] | None = None,
                  check_files: bool = True, row_names: Sequence[str] | None = None) -> None:
    """Check manifest rows and raise ONE error listing every offending row.

    Args:
        rows: The rows.
        source: The file the rows came from (named in the error).
        classes: Allowed labels; ``None`` accepts any.
        check_files: Require image (and mask, when given) files to exist.
        row_names: How to name each row in messages (default ``"row N"`` with N = index + 2, as the
            rows would appear in a manifest under its header).

    Raises:
        InputError: ``"<source>: 2 problems: row 3: ...; row 5: ..."``.
    """
    raise_problems(source, row_problems(rows, classes, check_files, row_names))


def row_problems(rows: Sequence[ManifestRow], classes: Sequence[str] | None, check_files: bool,
                 row_names: Sequence[str] | None) -> list[str]:
    """Every problem of ``rows`` as ``"<row name>: <problem>"``, in row order (see :func:`validate_rows`)."""
    names = list(row_names) if row_names is not None else [f"row {i + 2}" for i in range(len(rows))]
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for name, row in zip(names, rows, strict=True):
        found = _one_row_problems(row, classes, check_files)
        if row.case_id in first_seen:
            found.append(f"duplicate case_id {row.case_id!r} (first at {first_seen[row.case_id]})")
        first_seen.setdefault(row.case_id, name)
        problems += [f"{name}: {p}" for p in found]
    return problems


def raise_problems(source: str | Path, problems: Sequence[str]) -> None:
    """Raise ONE :class:`~livercad.errors.InputError` on ``source`` listing ``problems``; nothing when empty."""
    if problems:
        raise InputError(source, f"{len(problems)} problem(s): " + "; ".join(problems))


__all__ = ["MAX_CASE_ID_LENGTH", "SPLITS", "parse_liver_labels", "raise_problems", "row_problems", "safe_case_id",
           "validate_rows"]

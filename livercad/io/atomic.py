"""Atomic file writes: a reader never sees a partial file under the final name.

Every writer goes through :func:`atomic_write`: the content is written to a hidden temporary file in
the destination folder (same file system, so the final rename is atomic), flushed to disk with
``fsync``, then moved over the final name with :func:`os.replace`. On any error the temporary file is
removed and the final name is left untouched (the old file, if any, survives).

The temporary name keeps the real suffixes (``.x.tmp1a2b3c4d.nii.gz`` for ``x.nii.gz``) so that
libraries choosing a format from the file name (nibabel) write the right one.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz", ".csv.gz", ".json.gz")


def _split_suffix(name: str) -> tuple[str, str]:
    """Split ``name`` into (base, suffix) keeping known double suffixes together."""
    lower = name.lower()
    for double in _DOUBLE_SUFFIXES:
        if lower.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double) :]
    suffix = Path(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


def _create_temp(path: Path) -> Path:
    """Create an empty, exclusive temporary file next to ``path`` (mode honours the umask)."""
    base, suffix = _split_suffix(path.name)
    for _ in range(100):
        tmp = path.with_name(f".{base}.tmp{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: could not create a unique temporary file next to it")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Flush the directory entry of a rename; silently skipped where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Write a file atomically through a temporary file in the same folder.

    Args:
        path: The final file name. Missing parent folders are created.
        writer: Called with the temporary path; it must write the complete content there.

    Returns:
        The final path.

    Raises:
        Whatever ``writer`` raises (the temporary file is removed first), or ``OSError`` when the
        folder is not writable.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> atomic_write(folder / "a.txt", lambda p: p.write_text("hi")).read_text()
        'hi'
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(final)
    try:
        writer(tmp)
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)
    logger.debug("wrote %s", final)
    return final


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Example:
        >>> import tempfile
        >>> p = atomic_write_bytes(Path(tempfile.mkdtemp()) / "b.bin", b"\\x00\\x01")
        >>> p.read_bytes()
        b'\\x00\\x01'
    """

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    return atomic_write(path, _write)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation).

    Example:
        >>> import tempfile
        >>> atomic_write_text(Path(tempfile.mkdtemp()) / "t.csv", "a,b\\n").read_text()
        'a,b\\n'
    """
    return atomic_write_bytes(path, text.encode(encoding))


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]

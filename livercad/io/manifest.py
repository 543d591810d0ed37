"""CSV manifests: one row per case, validated on load.

Columns: ``case_id, patient_id, image, mask, label, split`` plus any free extra columns (``modality``,
``site``, ``severity``, ``liver_labels`` ...), kept as strings in :attr:`ManifestRow.extra`. Extra columns
named ``image_<phase>`` (``image_arterial``, ``image_noncontrast`` ...) hold further co-registered images of
the case (:mod:`livercad.io.channels`): paths, resolved like ``image``.

* ``image`` is the only required column. Without a ``case_id`` column, ids are the image file names
  without ``.nii``/``.nii.gz``; with one, every cell must hold a safe id (see
  :func:`~livercad.io.manifest_check.safe_case_id`).
* ``mask``, ``label``, ``split`` and ``patient_id`` may be empty in any row (empty = missing;
  ``patient_id`` then defaults to the case id). ``split`` is one of ``train``, ``val``, ``test``.
* Relative paths resolve against the manifest's folder; header names are matched case-insensitively.
* Row numbers in messages are those a spreadsheet shows: the header is row 1, the first case row 2.

Every problem of a file is collected and raised as ONE :class:`~livercad.errors.InputError`; the row checks
live in :mod:`livercad.io.manifest_check`.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from livercad.errors import InputError
from livercad.io.atomic import atomic_write_text
from livercad.io.manifest_check import raise_problems, row_problems

logger = logging.getLogger(__name__)

STANDARD_COLUMNS = ("case_id", "patient_id", "image", "mask", "label", "split")


@dataclass(frozen=True)
class ManifestRow:
    """One case of a manifest (paths absolute after :func:`read_manifest`)."""

    case_id: str
    patient_id: str
    image: Path
    mask: Path | None = None
    label: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def case_id_from_path(path: str | Path) -> str:
    """The file name without ``.nii.gz``/``.nii`` (or its last suffix for other files).

    Example:
        >>> case_id_from_path("/data/imagesTr/liver_0.nii.gz")
        'liver_0'
    """
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _decode(raw: bytes, path: Path) -> str:
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = raw[:offset].count(b"\n") + 1
        raise InputError(path, f"not UTF-8 text: byte 0x{raw[offset]:02x} at offset {offset} (line {line}); "
                               "re-save the manifest as UTF-8") from None


def _records(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise InputError(path, "manifest file not found")
    text = _decode(path.read_bytes(), path)
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV ({exc})") from None
    if not records or not any(cell.strip() for cell in records[0]):
        raise InputError(path, "manifest is empty (expected a header row such as 'case_id,image,mask,label')")
    return records


def _header(cells: list[str], path: Path) -> list[str]:
    names = [c.strip().lower() if c.strip().lower() in STANDARD_COLUMNS else c.strip() for c in cells]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or "" in names:
        raise InputError(path, f"header row has duplicate or empty column names: {dupes or ['']}")
    if "image" not in names:
        hint = next((f"; the file seems to use {sep!r} as separator, expected ','"
                     for sep in (";", "\t") if len(cells) == 1 and sep in cells[0]), "")
        raise InputError(path, f"missing required column 'image' (found columns: {', '.join(names)}){hint}")
    return names


def _resolve(cell: str, base: Path) -> Path:
    return Path(os.path.normpath(base / Path(cell).expanduser()))


#: Extra columns that hold paths (relative to the manifest, made absolute like ``image`` and ``mask``); so do
#: the ``image_<phase>`` columns (:func:`is_image_column`).
PATH_EXTRAS = ("external_mask",)


def is_image_column(name: str) -> bool:
    """True for an ``image_<phase>`` column: a further co-registered image of the case (:mod:`livercad.io.channels`).

    Example:
        >>> is_image_column("image_arterial"), is_image_column("Image_PV"), is_image_column("site")
        (True, True, False)
    """
    return name.lower().startswith("image_") and len(name) > len("image_")


def _is_path_column(name: str) -> bool:
    return name in PATH_EXTRAS or is_image_column(name)


def _make_row(values: dict[str, str], base: Path) -> ManifestRow:
    case_id = values["case_id"] if "case_id" in values else case_id_from_path(values["image"])
    mask = values.get("mask", "")
    return ManifestRow(case_id=case_id, patient_id=values.get("patient_id") or case_id,
                       image=_resolve(values["image"], base), mask=_resolve(mask, base) if mask else None,
                       label=values.get("label") or None, split=values.get("split", "").lower() or None,
                       extra={k: (str(_resolve(v, base)) if _is_path_column(k) and v else v)
                              for k, v in values.items() if k not in STANDARD_COLUMNS})


def read_manifest(path: str | Path, *, classes: Sequence[str] | None = None,
                  check_files: bool = True) -> list[ManifestRow]:
    """Read and validate a CSV manifest.

    Args:
        path: The manifest (UTF-8, with or without BOM, comma-separated, header row first).
        classes: Allowed labels; ``None`` accepts any label.
        check_files: Require every image and mask file to exist.

    Returns:
        The rows in file order (blank rows skipped), with absolute paths.

    Raises:
        InputError: ONE error naming the manifest and listing every offending row (spreadsheet row
            numbers: header = row 1): wrong number of fields, missing image, unsafe or duplicate case
            ids, bad split, unknown label, missing files, bad ``liver_labels``; or non-UTF-8 bytes.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "manifest.csv"
        >>> _ = p.write_text("case_id,image,label\\na1,images/a1.nii.gz,normal\\n")
        >>> [(r.case_id, r.patient_id, r.image.name, r.label) for r in read_manifest(p, check_files=False)]
        [('a1', 'a1', 'a1.nii.gz', 'normal')]
    """
    file = Path(path)
    records = _records(file)
    names, base = _header(records[0], file), Path(os.path.abspath(file)).parent
    rows, row_names, problems = [], [], []
    for number, cells in enumerate(records[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            problems.append(f"row {number}: {len(cells)} fields, the header has {len(names)}")
            continue
        values = {n: c.strip() for n, c in zip(names, cells, strict=True)}
        if not values["image"]:
            problems.append(f"row {number}: empty image")
            continue
        rows.append(_make_row(values, base))
        row_names.append(f"row {number}")
    problems += row_problems(rows, classes, check_files, row_names)
    raise_problems(file, sorted(problems, key=lambda p: int(p.split(":", 1)[0].split()[-1])))  # by row
    logger.info("read %d cases from %s", len(rows), file)
    return rows


def _relative(path: Path | None, base: Path) -> str:
    if path is None:
        return ""
    full = Path(os.path.abspath(path))
    try:
        return full.relative_to(base).as_posix()
    except ValueError:
        return str(full)


def write_manifest(rows: Sequence[ManifestRow], path: str | Path) -> Path:
    """Write rows as a CSV manifest (atomic); paths inside the manifest's folder are written relative.

    Columns are the standard ones followed by every extra column in first-seen order.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> p = write_manifest([ManifestRow("a", "p1", d / "img" / "a.nii.gz", extra={"site": "s1"})], d / "m.csv")
        >>> p.read_text().splitlines()
        ['case_id,patient_id,image,mask,label,split,site', 'a,p1,img/a.nii.gz,,,,s1']
    """
    file = Path(path)
    base = Path(os.path.abspath(file)).parent
    extras = list(dict.fromkeys(k for row in rows for k in row.extra if k not in STANDARD_COLUMNS))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*STANDARD_COLUMNS, *extras])
    for r in rows:
        writer.writerow([r.case_id, r.patient_id, _relative(r.image, base), _relative(r.mask, base),
                         r.label or "", r.split or "", *(r.extra.get(k, "") for k in extras)])
    return atomic_write_text(file, buffer.getvalue())


__all__ = ["ManifestRow", "STANDARD_COLUMNS", "case_id_from_path", "is_image_column", "read_manifest",
           "write_manifest"]

"""The TotalSegmentator dataset layout to a manifest.

Layout: ``<subject>/ct.nii.gz`` (or ``mri.nii.gz`` for the MR release) + ``<subject>/segmentations/liver.nii.gz``
(one binary file per structure, picked by its name, so ``liver_labels`` is empty = every value > 0) + an
optional ``meta.csv`` (``image_id;age;gender;institute;study_type;split``, semicolon-separated; commas are
accepted too) giving ``split`` (``train`` | ``val`` | ``test``) and ``site`` (the institute). ``modality`` is
``ct`` (``mr`` for ``mri.nii.gz``); ``patient_id`` is the subject id (the dataset names no patients).

A subject folder with ``segmentations/`` but no image, or without the liver file, is left out with a
warning; folders holding neither are not subjects and are ignored.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from livercad.errors import InputError
from livercad.io.convert_public import Collected, finish, override_text
from livercad.io.manifest import ManifestRow
from livercad.io.manifest_check import SPLITS

logger = logging.getLogger(__name__)
_NII = (".nii.gz", ".nii")


def _meta_rows(path: Path) -> dict[str, dict[str, str]]:
    """``{image_id: row}`` of a TotalSegmentator ``meta.csv`` (``;``-separated; ``,`` accepted)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read meta.csv ({exc})") from None
    delimiter = ";" if lines and ";" in lines[0] else ","
    reader = csv.DictReader(lines, delimiter=delimiter)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "image_id" not in header:
        raise InputError(path, f"no image_id column (found: {', '.join(header) or 'an empty file'})")
    rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if isinstance(k, str)} for r in reader]
    return {r["image_id"]: r for r in rows if r.get("image_id")}


def _split(value: str) -> str | None:
    key = {"validation": "val", "training": "train", "testing": "test"}.get(value.lower(), value.lower())
    return key if key in SPLITS else None


def _subject_row(subject: Path, meta: Mapping[str, str], structure: str, labels: str, found: Collected) -> None:
    """Add the row of one TotalSegmentator subject folder, or list why it is left out."""
    images = [(subject / f"{name}.nii.gz", mod) for name, mod in (("ct", "ct"), ("mri", "mr"))]
    image, modality = next(((p, m) for p, m in images if p.is_file()), (None, ""))
    segs = subject / "segmentations"
    if image is None:
        if segs.is_dir():
            found.skip(subject, "no ct.nii.gz or mri.nii.gz next to segmentations/")
        return
    mask = next((segs / f"{structure}{e}" for e in _NII if (segs / f"{structure}{e}").is_file()), None)
    if segs.is_dir() and mask is None:
        found.skip(subject, f"segmentations/ holds no {structure}.nii.gz")
        return
    split = _split(meta.get("split", ""))
    if meta.get("split") and split is None:
        logger.warning("%s: split %r in meta.csv is not train/val/test; left empty", subject.name, meta["split"])
    extra = {"liver_labels": labels, "modality": modality, "site": meta.get("institute", "")}
    found.add(ManifestRow(subject.name, subject.name, image, mask, split=split, extra=extra), subject.name)


def from_totalseg(root: str | Path, *, liver_labels: Sequence[int] | None = None,
                  structure: str = "liver") -> list[ManifestRow]:
    """Rows of a TotalSegmentator dataset folder: ``<subject>/ct.nii.gz`` + ``segmentations/liver.nii.gz``.

    Args:
        root: The folder holding the subject folders (and ``meta.csv``).
        liver_labels: Label values counted as liver; default empty (the structure file is binary).
        structure: Which structure file is the mask (``segmentations/<structure>.nii.gz``).

    Raises:
        InputError: naming the folder when it is missing or no subject is usable, or ``meta.csv`` when
            it is unreadable or has no ``image_id`` column.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    meta_file = folder / "meta.csv"
    meta = _meta_rows(meta_file) if meta_file.is_file() else {}
    found, text = Collected(), override_text(liver_labels) or ""
    for subject in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        _subject_row(subject, meta.get(subject.name, {}), structure, text, found)
    return finish(found, folder, "totalseg")


__all__ = ["from_totalseg"]

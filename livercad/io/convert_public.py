"""Converters for public multi-organ liver datasets: AMOS and FLARE22, and their shared helpers.

CHAOS (DICOM + PNG masks) is in :mod:`livercad.io.convert_chaos`, the TotalSegmentator dataset in
:mod:`livercad.io.convert_totalseg`. Every converter:

* picks the liver **by name** from the dataset's label map (AMOS ``dataset.json`` ``labels``), or from a
  built-in map where the dataset ships none (:data:`FLARE22_LABELS`; TotalSegmentator names its files after
  the structure), and records the values in the ``liver_labels`` column;
* writes a ``modality`` column (``ct`` | ``mr``);
* lists a malformed case (a label without image, a missing liver file) in one warning each and goes on;
  when no case is left it raises one :class:`~livercad.errors.InputError` listing them.

Layout details:

* ``amos``: ``dataset.json`` + ``imagesTr/``, ``labelsTr/``, ``imagesVa/``, ``labelsVa/``, ``imagesTs/``
  (image and label share the file name). ``split`` is ``train`` (Tr), ``val`` (Va) and ``test`` (Ts). The
  modality comes from the case number: **AMOS ids 1-500 are CT, 501-600 MR** (AMOS22's numbering); a case
  id without a number takes ``dataset.json``'s ``modality`` when that names a single modality.
* ``flare22``: ``images/<case>_0000.nii.gz`` + ``labels/<case>.nii.gz`` (13 organs, liver = 1); all CT;
  images without a label become unlabelled rows; ``split`` is left empty.

These datasets carry no patient identity, so ``patient_id`` is the case id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livercad.errors import InputError
from livercad.io.manifest import ManifestRow
from livercad.io.manifest_check import validate_rows

logger = logging.getLogger(__name__)

LIVER_NAMES = ("liver",)
#: FLARE22 label values (the challenge's data description; no label map ships with the data).
FLARE22_LABELS = {1: "liver", 2: "right kidney", 3: "spleen", 4: "pancreas", 5: "aorta",
                  6: "inferior vena cava", 7: "right adrenal gland", 8: "left adrenal gland", 9: "gallbladder",
                  10: "esophagus", 11: "stomach", 12: "duodenum", 13: "left kidney"}
#: AMOS22 label values, used when ``dataset.json`` has no ``labels``.
AMOS_LABELS = {1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gall bladder", 5: "esophagus", 6: "liver",
               7: "stomach", 8: "aorta", 9: "postcava", 10: "pancreas", 11: "right adrenal gland",
               12: "left adrenal gland", 13: "duodenum", 14: "bladder", 15: "prostate/uterus"}
AMOS_LAST_CT_ID = 500
_AMOS_PARTS = (("imagesTr", "labelsTr", "train"), ("imagesVa", "labelsVa", "val"), ("imagesTs", "labelsTs", "test"))
_NII = (".nii.gz", ".nii")


@dataclass
class Collected:
    """Rows found so far, how messages name them, and the cases left out (``"<path>: <reason>"``)."""

    rows: list[ManifestRow] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, row: ManifestRow, name: str) -> None:
        """Append one row and its name."""
        self.rows.append(row)
        self.names.append(name)

    def skip(self, path: Path | str, reason: str) -> None:
        """Leave one case out, with the file or folder to blame and why."""
        self.problems.append(f"{path}: {reason}")


def finish(found: Collected, source: Path, layout: str, *, check_files: bool = True) -> list[ManifestRow]:
    """Warn about each case left out, validate the rows and return them.

    Raises:
        InputError: naming ``source`` when no case is left (listing what went wrong) or a row is invalid.
    """
    for problem in found.problems:
        logger.warning("%s: case left out: %s", layout, problem)
    if not found.rows:
        detail = f": {len(found.problems)} problem(s): {'; '.join(found.problems)}" if found.problems else ""
        raise InputError(source, f"no usable cases found in the {layout} layout{detail}")
    validate_rows(found.rows, source, row_names=found.names, check_files=check_files)
    logger.info("%s: %d cases (%d with masks, %d left out) from %s", layout, len(found.rows),
                sum(r.mask is not None for r in found.rows), len(found.problems), source)
    return found.rows


def labels_by_name(label_map: Mapping[int, str], source: Path | str, names: Sequence[str] = LIVER_NAMES) -> str:
    """The ``liver_labels`` text: values > 0 whose name contains one of ``names`` (case-insensitive).

    Raises:
        InputError: naming ``source`` when no label has such a name.

    Example:
        >>> labels_by_name({0: "background", 1: "spleen", 6: "Liver"}, "dataset.json")
        '6'
    """
    values = sorted(v for v, name in label_map.items() if v > 0 and any(n.lower() in name.lower() for n in names))
    if not values:
        known = ", ".join(f"{v}={n}" for v, n in sorted(label_map.items()))
        raise InputError(source, f"no label named {' or '.join(names)} in the label map ({known or 'empty'})")
    return ",".join(str(v) for v in values)


def label_map(labels: Any, source: Path) -> dict[int, str]:
    """``{value: name}`` from ``{"6": "liver"}`` (MSD/AMOS) or ``{"liver": 6}`` (nnU-Net v2) mappings.

    Raises:
        InputError: naming ``source`` when ``labels`` is not such a mapping.
    """
    out: dict[int, str] = {}
    for key, value in (labels.items() if isinstance(labels, Mapping) else []):
        if isinstance(value, str) and str(key).strip().isdigit():
            out[int(key)] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            out[value] = str(key)
    if not out:
        raise InputError(source, f"'labels' must map label values to names, got {labels!r}")
    return out


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object read from ``path``.

    Raises:
        InputError: naming the file when it is missing, not UTF-8, not JSON or not an object.
    """
    if not path.is_file():
        raise InputError(path, "dataset.json not found (is this the dataset's root folder?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(meta, dict):
        raise InputError(path, f"expected a JSON object, got {type(meta).__name__}")
    return meta


def nifti_files(folder: Path, suffix: str = "") -> dict[str, Path]:
    """``{case id: file}`` of the ``<case><suffix>.nii(.gz)`` files in ``folder`` (hidden files ignored)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        for ending in _NII:
            if path.name.endswith(suffix + ending) and not path.name.startswith(".") and path.is_file():
                found.setdefault(path.name[: -len(suffix + ending)], path)
    return found


def override_text(liver_labels: Sequence[int] | None) -> str | None:
    """The ``liver_labels`` text of values the caller chose (``[1, 2]`` -> ``"1,2"``), else ``None``."""
    return None if liver_labels is None else ",".join(str(int(v)) for v in liver_labels)


def _amos_modality(case_id: str, fallback: str) -> str:
    match = re.search(r"(\d+)$", case_id)
    if match is None:
        return fallback
    return "ct" if int(match.group(1)) <= AMOS_LAST_CT_ID else "mr"


def _declared_modality(meta: Mapping[str, Any]) -> str:
    """The single modality ``dataset.json`` names (``modality`` or ``channel_names``), else ``""``."""
    declared = meta.get("modality") or meta.get("channel_names") or {}
    names = {str(v).strip().lower() for v in (declared.values() if isinstance(declared, Mapping) else [declared])}
    names = {"mr" if n in ("mri", "mr") else n for n in names}
    return names.pop() if len(names) == 1 and names <= {"ct", "mr"} else ""


def from_amos(root: str | Path, *, liver_labels: Sequence[int] | None = None) -> list[ManifestRow]:
    """Rows of an AMOS folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesVa/`` ...).

    Args:
        root: The folder holding ``dataset.json``.
        liver_labels: Label values counted as liver; default: the ``labels`` entries named liver (6).

    Raises:
        InputError: naming ``dataset.json`` when it is unreadable, has no label named liver, or no
            case is usable (a label file without its image is left out with a warning).
    """
    folder = Path(root)
    source = folder / "dataset.json"
    meta = read_json(source)
    labels = meta.get("labels")
    names = label_map(labels, source) if labels is not None else AMOS_LABELS
    text = override_text(liver_labels) or labels_by_name(names, source)
    fallback, found = _declared_modality(meta), Collected()
    for images, masks, split in _AMOS_PARTS:
        image_files, label_files = nifti_files(folder / images), nifti_files(folder / masks)
        for case, image in image_files.items():
            extra = {"liver_labels": text, "modality": _amos_modality(case, fallback)}
            found.add(ManifestRow(case, case, image, label_files.get(case), split=split, extra=extra),
                      f"{images}/{image.name}")
        for case in sorted(set(label_files) - set(image_files)):
            found.skip(label_files[case], f"no image {images}/{case}.nii.gz for this label")
    return finish(found, source, "amos")


def from_flare22(root: str | Path, *, liver_labels: Sequence[int] | None = None) -> list[ManifestRow]:
    """Rows of a FLARE22 folder: ``images/<case>_0000.nii.gz`` + ``labels/<case>.nii.gz``.

    Liver values come from :data:`FLARE22_LABELS` by name (1), or from a ``dataset.json`` ``labels``
    map when the folder has one. Images without a label are unlabelled rows.

    Raises:
        InputError: naming the folder when ``images/`` is missing or no case is usable.
    """
    folder = Path(root)
    if not (folder / "images").is_dir():
        raise InputError(folder, "no images/ folder (expected images/<case>_0000.nii.gz and labels/<case>.nii.gz)")
    meta_file = folder / "dataset.json"
    declared = read_json(meta_file).get("labels") if meta_file.is_file() else None
    names = label_map(declared, meta_file) if declared is not None else FLARE22_LABELS
    text = override_text(liver_labels) or labels_by_name(names, meta_file if declared is not None else folder)
    images, labels, found = nifti_files(folder / "images", "_0000"), nifti_files(folder / "labels"), Collected()
    for case, image in images.items():
        found.add(ManifestRow(case, case, image, labels.get(case), extra={"liver_labels": text, "modality": "ct"}),
                  f"images/{image.name}")
    for case in sorted(set(labels) - set(images)):
        found.skip(labels[case], f"no image images/{case}_0000.nii.gz for this label")
    return finish(found, folder, "flare22")


def detect_public_layout(root: str | Path) -> str | None:
    """``chaos``, ``amos``, ``flare22`` or ``totalseg`` when ``root`` clearly has that layout, else ``None``."""
    folder = Path(root)
    if not folder.is_dir():
        return None
    if any(folder.glob("CT/*/DICOM_anon")) or any(folder.glob("MR/*/T2SPIR")) or any(folder.glob("MR/*/T1DUAL")):
        return "chaos"
    if (folder / "dataset.json").is_file() and ((folder / "imagesVa").is_dir() or "amos" in folder.name.lower()):
        meta = read_json(folder / "dataset.json")
        return None if "file_ending" in meta or "channel_names" in meta else "amos"  # nnU-Net's AMOS is nnunet
    if (folder / "images").is_dir() and (folder / "labels").is_dir() and any(folder.glob("images/*_0000.nii*")):
        return "flare22"
    if any(folder.glob("*/segmentations/liver.nii*")):
        return "totalseg"
    return None


__all__ = ["AMOS_LABELS", "AMOS_LAST_CT_ID", "FLARE22_LABELS", "Collected", "detect_public_layout", "finish",
           "from_amos", "from_flare22", "label_map", "labels_by_name", "nifti_files", "override_text",
           "read_json"]

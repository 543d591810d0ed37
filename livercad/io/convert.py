"""Converters from public dataset layouts to manifest rows.

Supported layouts:

* ``msd``: Medical Segmentation Decathlon (``dataset.json`` listing ``training`` image/label pairs
  and ``test`` images; ``imagesTr/``, ``labelsTr/``, ``imagesTs/``).
* ``nnunet``: nnU-Net v2 raw (``dataset.json`` with ``labels`` and ``file_ending``;
  ``imagesTr/CASE_0000.nii.gz``, ``labelsTr/CASE.nii.gz``, ``imagesTs/``).
* ``lits``: LiTS-style ``volume-N.nii(.gz)`` with ``segmentation-N.nii(.gz)`` anywhere below the root
  (and unlabeled ``test-volume-N.nii(.gz)``).
* ``chaos``, ``amos``, ``flare22``, ``totalseg``: see :mod:`livercad.io.convert_chaos` (writes NIfTI masks
  next to the manifest) and :mod:`livercad.io.convert_public`.

The label values that count as liver are recorded per row in ``extra["liver_labels"]`` (e.g.
``"1,2"`` when liver = 1 and tumour = 2, since a tumour lies inside the liver); they are applied
when the mask is read (``load_mask(..., liver_labels=parse_liver_labels(...))``). These layouts carry
no patient identity, so ``patient_id`` is the case id: when several cases belong to one patient,
fill ``patient_id`` in the manifest before splitting. ``split`` is left empty.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from livercad.errors import ConfigError, InputError
from livercad.io.convert_chaos import from_chaos
from livercad.io.convert_public import detect_public_layout, from_amos, from_flare22, read_json
from livercad.io.convert_totalseg import from_totalseg
from livercad.io.manifest import ManifestRow, case_id_from_path, write_manifest
from livercad.io.manifest_check import validate_rows

logger = logging.getLogger(__name__)

DEFAULT_LIVER_NAMES = ("liver", "tumor", "tumour", "lesion", "cancer")
_LITS = re.compile(r"^(test-volume|volume|segmentation)-(\d+)\.nii(\.gz)?$", re.IGNORECASE)


def label_pairs(labels: Mapping[str, Any]) -> list[tuple[str, list[int]]]:
    """(name, values) pairs from MSD ``{"1": "liver"}`` or nnU-Net ``{"liver": 1 | [1, 2]}`` mappings."""
    pairs = []
    for key, value in labels.items():
        if isinstance(value, str) and str(key).lstrip("-").isdigit():
            pairs.append((value, [int(key)]))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs.append((str(key), [value]))
        elif isinstance(value, list) and all(isinstance(v, int) for v in value):
            pairs.append((str(key), list(value)))
    return pairs


def liver_label_values(labels: Mapping[str, Any], liver_names: Sequence[str] = DEFAULT_LIVER_NAMES) -> str:
    """The label values counted as liver, as the ``liver_labels`` text (``"1,2"``).

    Values whose name contains one of ``liver_names`` (case-insensitive) are chosen; when none
    matches, every value > 0; an empty string (= "every label > 0") when ``labels`` is empty.

    Example:
        >>> liver_label_values({"0": "background", "1": "liver", "2": "cancer"})
        '1,2'
        >>> liver_label_values({"background": 0, "spleen": 1})
        '1'
    """
    pairs = [(name.lower(), [v for v in values if v > 0]) for name, values in label_pairs(labels)]
    chosen = {v for name, values in pairs if any(n.lower() in name for n in liver_names) for v in values}
    chosen = chosen or {v for _, values in pairs for v in values}
    return ",".join(str(v) for v in sorted(chosen))


def _labels_text(meta: Mapping[str, Any], liver_labels: Sequence[int] | None, liver_names: Sequence[str]) -> str:
    if liver_labels is not None:
        return ",".join(str(int(v)) for v in liver_labels)
    labels = meta.get("labels")
    return liver_label_values(labels, liver_names) if isinstance(labels, Mapping) else ""


def _row(case_id: str, image: Path, mask: Path | None, labels: str) -> ManifestRow:
    return ManifestRow(case_id=case_id, patient_id=case_id, image=image, mask=mask,
                       extra={"liver_labels": labels})


def _finish(rows: list[ManifestRow], names: list[str], source: Path, layout: str) -> list[ManifestRow]:
    if not rows:
        raise InputError(source, f"no cases found in the {layout} layout")
    validate_rows(rows, source, row_names=names)
    logger.info("%s: %d cases (%d with masks) from %s", layout, len(rows), sum(r.mask is not None for r in rows),
                source)
    return rows


def _entry(root: Path, value: Any) -> Path | None:
    return Path(os.path.normpath(root / value)) if isinstance(value, str) and value else None


def from_msd(root: str | Path, *, liver_labels: Sequence[int] | None = None,
             liver_names: Sequence[str] = DEFAULT_LIVER_NAMES) -> list[ManifestRow]:
    """Rows of a Medical Segmentation Decathlon task folder (e.g. ``Task03_Liver``).

    Args:
        root: The task folder holding ``dataset.json``.
        liver_labels: Label values counted as liver; default: from ``dataset.json`` ``labels`` by name
            (Task03_Liver: 1 liver + 2 cancer -> ``"1,2"``).
        liver_names: Label-name fragments that mean liver.

    Raises:
        InputError: naming ``dataset.json`` and listing every bad entry (missing files, unsafe or
            duplicate case ids).
    """
    folder = Path(root)
    source = folder / "dataset.json"
    meta = read_json(source)
    labels = _labels_text(meta, liver_labels, liver_names)
    rows, names = [], []
    for part, has_mask in (("training", True), ("test", False)):
        entries = meta.get(part) or []
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            image = _entry(folder, entry.get("image") if isinstance(entry, dict) else entry)
            mask = _entry(folder, entry.get("label")) if has_mask and isinstance(entry, dict) else None
            if image is None:
                raise InputError(source, f"{part}[{i}]: expected an image path, got {entry!r}")
            rows.append(_row(case_id_from_path(image), image, mask, labels))
            names.append(f"{part}[{i}]")
    return _finish(rows, names, source, "msd")


def _images(folder: Path, suffix: str) -> list[tuple[str, Path]]:
    if not folder.is_dir():
        return []
    found = [(p.name[: -len(suffix)], p) for p in folder.iterdir()
             if p.name.endswith(suffix) and not p.name.startswith(".")]
    return sorted(found)


def from_nnunet(root: str | Path, *, liver_labels: Sequence[int] | None = None,
                liver_names: Sequence[str] = DEFAULT_LIVER_NAMES, channel: int = 0) -> list[ManifestRow]:
    """Rows of an nnU-Net v2 raw dataset folder (``DatasetXXX_Name``).

    Args:
        root: The folder holding ``dataset.json``, ``imagesTr/``, ``labelsTr/`` (and ``imagesTs/``).
        liver_labels: Label values counted as liver; default: ``labels`` entries whose name contains
            one of ``liver_names``, else every label > 0.
        liver_names: Label-name fragments that mean liver.
        channel: Which input channel (``_0000``, ``_0001`` ...) to use as the image.

    Raises:
        InputError: naming ``dataset.json`` for an unsupported ``file_ending`` or missing labels.
    """
    folder = Path(root)
    source = folder / "dataset.json"
    meta = read_json(source)
    ending = str(meta.get("file_ending", ".nii.gz"))
    if ending not in (".nii.gz", ".nii"):
        raise InputError(source, f"file_ending {ending!r} is not supported (livercad reads .nii and .nii.gz)")
    labels, suffix = _labels_text(meta, liver_labels, liver_names), f"_{channel:04d}{ending}"
    rows, names = [], []
    for part, has_mask in (("imagesTr", True), ("imagesTs", False)):
        for case, image in _images(folder / part, suffix):
            mask = folder / "labelsTr" / f"{case}{ending}" if has_mask else None
            rows.append(_row(case, image, mask, labels))
            names.append(f"{part}/{image.name}")
    expected = meta.get("numTraining")
    if isinstance(expected, int) and expected != sum(r.mask is not None for r in rows):
        logger.warning("%s: numTraining is %d but imagesTr holds %d cases", source, expected,
                       sum(r.mask is not None for r in rows))
    return _finish(rows, names, source, "nnunet")


def _scan_lits(folder: Path) -> tuple[dict[tuple[str, int], Path], list[str]]:
    found: dict[tuple[str, int], Path] = {}
    problems = []
    for path in sorted(folder.rglob("*")):
        match = _LITS.match(path.name)
        if match is None or path.name.startswith(".") or not path.is_file():
            continue
        key = (match.group(1).lower(), int(match.group(2)))
        if key in found:
            problems.append(f"{path}: {key[0]}-{key[1]} also found as {found[key]}")
        found.setdefault(key, path)
    return found, problems


def from_lits(root: str | Path, *, liver_labels: Sequence[int] | None = (1, 2)) -> list[ManifestRow]:
    """Rows of a LiTS-style folder: ``volume-N.nii(.gz)`` + ``segmentation-N.nii(.gz)`` (any depth).

    Case ids are the volume file names (``volume-7``, ``test-volume-3``); liver labels default to
    ``1,2`` (liver and tumour).

    Raises:
        InputError: naming the folder when no volume is found, a file appears twice, or a
            segmentation has no volume.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise InputError(folder, "folder not found")
    found, problems = _scan_lits(folder)
    labels = ",".join(str(int(v)) for v in liver_labels) if liver_labels is not None else ""
    problems += [f"{path.name} has no matching volume-{n}" for (kind, n), path in found.items()
                 if kind == "segmentation" and ("volume", n) not in found]
    if problems:
        raise InputError(folder, f"{len(problems)} problem(s): " + "; ".join(problems))
    rows, names = [], []
    for (kind, n), path in sorted(found.items(), key=lambda item: (item[0][0] != "volume", item[0][1])):
        if kind != "segmentation":
            rows.append(_row(case_id_from_path(path), path, found.get(("segmentation", n)) if kind == "volume"
                             else None, labels))
            names.append(path.name)
    return _finish(rows, names, folder, "lits")


CONVERTERS: dict[str, Callable[..., list[ManifestRow]]] = {"msd": from_msd, "nnunet": from_nnunet,
                                                           "lits": from_lits, "chaos": from_chaos,
                                                           "amos": from_amos, "flare22": from_flare22,
                                                           "totalseg": from_totalseg}
#: Converters that write files (masks) and take ``out_dir`` (the manifest's folder).
WRITES_MASKS = frozenset({"chaos"})


def detect_layout(root: str | Path) -> str:
    """Guess a dataset folder's layout: chaos, amos, flare22, totalseg, nnunet, msd or lits.

    Raises:
        InputError: when the folder matches none of them.
    """
    folder = Path(root)
    public = detect_public_layout(folder)
    if public is not None:
        return public
    if (folder / "dataset.json").is_file():
        meta = read_json(folder / "dataset.json")
        if "file_ending" in meta or "channel_names" in meta:
            return "nnunet"
        if "training" in meta:
            return "msd"
    elif folder.is_dir() and any(_LITS.match(p.name) for p in folder.rglob("*volume-*.nii*")):
        return "lits"
    raise InputError(folder, "cannot tell the dataset layout (expected an MSD or nnU-Net dataset.json, or "
                             "LiTS volume-N.nii files); pass layout='msd', 'nnunet', 'lits', 'chaos', "
                             "'amos', 'flare22' or 'totalseg'")


def convert_dataset(src: str | Path, out_csv: str | Path, layout: str = "auto",
                    liver_labels: Sequence[int] | None = None) -> list[ManifestRow]:
    """Convert a dataset folder to a manifest CSV (written atomically) and return its rows.

    Args:
        src: The dataset root.
        out_csv: The manifest to write (paths inside its folder are written relative).
        layout: ``msd``, ``nnunet``, ``lits``, ``chaos``, ``amos``, ``flare22``, ``totalseg`` or ``auto``
            (see :func:`detect_layout`); ``chaos`` writes ``masks/`` next to ``out_csv``.
        liver_labels: Label values counted as liver; default: the converter's choice.

    Raises:
        ConfigError: unknown layout name.
        InputError: see the converters.
    """
    name = detect_layout(src) if layout == "auto" else layout.lower()
    if name not in CONVERTERS:
        raise ConfigError(f"unknown dataset layout {layout!r}; expected one of auto, {', '.join(CONVERTERS)}")
    kwargs: dict[str, Any] = {} if liver_labels is None else {"liver_labels": liver_labels}
    if name in WRITES_MASKS:
        kwargs["out_dir"] = Path(os.path.abspath(out_csv)).parent
    rows = CONVERTERS[name](src, **kwargs)
    write_manifest(rows, out_csv)
    return rows


__all__ = ["from_msd", "from_nnunet", "from_lits", "convert_dataset", "detect_layout", "liver_label_values",
           "label_pairs", "CONVERTERS", "DEFAULT_LIVER_NAMES"]

"""CHAOS (Combined Healthy Abdominal Organ Segmentation) to a manifest, with NIfTI masks on the DICOM grids.

Layout (the challenge's ``Train_Sets`` / ``Test_Sets`` folder)::

    CT/<patient>/DICOM_anon/*.dcm               CT/<patient>/Ground/*.png        (non-zero = liver)
    MR/<patient>/T1DUAL/DICOM_anon/InPhase/*.dcm, .../OutPhase/*.dcm
                                                MR/<patient>/T1DUAL/Ground/*.png (one set for both phases)
    MR/<patient>/T2SPIR/DICOM_anon/*.dcm        MR/<patient>/T2SPIR/Ground/*.png

One row per series: ``chaos_ct_<patient>``, ``chaos_mr_<patient>_t1-in``, ``..._t1-out``, ``..._t2spir``; the
``image`` is the DICOM series folder, ``modality`` is ``ct`` or ``mr``, ``sequence`` is ``t1-in``, ``t1-out``
or ``t2spir`` for MR, and ``patient_id`` is ``chaos_ct_<patient>`` / ``chaos_mr_<patient>`` (CT and MR
patients are different people; one patient's three MR series share the id, so splits keep them together).

Masks. The PNG stack is written as ``masks/<case>.nii.gz`` under the output folder, on exactly the grid of
the series as :func:`~livercad.io.dicom.load_dicom_series` reads it:

* **slices**: the PNG files, in natural name order, follow the DICOM *instance* order (InstanceNumber, then
  the file name), not the spatial order: PNG ``m`` goes to the file with the m-th instance number, wherever
  livercad's slice sort puts that file (CHAOS CT numbers its instances head to feet, so the PNG order is the
  reverse of the spatial one there);
* **in-plane**: PNG pixel ``(row r, column c)`` is DICOM pixel ``(r, c)``, i.e. livercad voxel
  ``(i, j) = (c, rows - 1 - r)`` (voxel axes are column, row bottom-up).

Values: CT PNGs are liver where non-zero (label 1). MR PNGs hold 63 liver, 126 right kidney, 189 left kidney,
252 spleen, read with the tolerance bands of the challenge's own tools (55-70, 110-135, 175-200, 240-255)
and stored as :data:`CHAOS_MR_LABELS`; the liver is picked from that map by name (``liver_labels`` = 1).

A series that cannot be read, or whose PNGs do not match it (count or size), is left out with a warning;
the other series go on. A patient without ``Ground`` (the test set) gives rows without a mask.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from livercad.errors import InputError
from livercad.io.convert_public import Collected, finish, labels_by_name
from livercad.io.dicom import dicom_record, load_dicom_series
from livercad.io.manifest import ManifestRow
from livercad.io.nifti_write import save_mask
from livercad.types import Volume

logger = logging.getLogger(__name__)

CHAOS_CT_LABELS = {1: "liver"}
CHAOS_MR_LABELS = {1: "liver", 2: "right kidney", 3: "left kidney", 4: "spleen"}
#: (stored label, lowest PNG value exclusive, highest inclusive) for MR masks (nominal 63, 126, 189, 252).
MR_BANDS = ((1, 55, 70), (2, 110, 135), (3, 175, 200), (4, 240, 255))


@dataclass(frozen=True)
class ChaosSeries:
    """One CHAOS series: its case, patient, modality, MR sequence, DICOM folder and PNG folder (if any)."""

    case_id: str
    patient_id: str
    modality: str
    sequence: str
    dicom: Path
    ground: Path | None


def natural_key(path: Path) -> list[int | str]:
    """Sort key that orders ``img2`` before ``img10``.

    Example:
        >>> sorted(["b10.png", "b9.png"], key=lambda n: natural_key(Path(n)))
        ['b9.png', 'b10.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def _ground(folder: Path) -> Path | None:
    return folder if folder.is_dir() else None


def chaos_series(root: Path) -> list[ChaosSeries]:
    """Every series a CHAOS folder names (``CT/<patient>``, ``MR/<patient>/T1DUAL|T2SPIR``), files unchecked."""
    found = []
    for patient in _subfolders(root / "CT"):
        pid = f"chaos_ct_{patient.name}"
        found.append(ChaosSeries(pid, pid, "ct", "", patient / "DICOM_anon", _ground(patient / "Ground")))
    for patient in _subfolders(root / "MR"):
        pid, t1, t2 = f"chaos_mr_{patient.name}", patient / "T1DUAL", patient / "T2SPIR"
        for sequence, dicom, ground in (("t1-in", t1 / "DICOM_anon" / "InPhase", t1 / "Ground"),
                                        ("t1-out", t1 / "DICOM_anon" / "OutPhase", t1 / "Ground"),
                                        ("t2spir", t2 / "DICOM_anon", t2 / "Ground")):
            found.append(ChaosSeries(f"{pid}_{sequence}", pid, "mr", sequence, dicom, _ground(ground)))
    return found


def instance_order(files: Sequence[Path]) -> list[Path]:
    """The files sorted by InstanceNumber (files without one last), then by natural file name.

    Raises:
        InputError: naming a file that cannot be read as DICOM.
    """
    def key(path: Path) -> tuple[float, list[int | str]]:
        try:
            number = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["InstanceNumber"]).get(
                "InstanceNumber")
        except (OSError, InvalidDicomError) as exc:
            raise InputError(path, f"cannot read the DICOM header ({exc})") from None
        return (float(number) if number not in (None, "") else float("inf"), natural_key(path))

    return sorted(files, key=key)


def read_png(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D PNG mask as ``(rows, columns)`` integers (first channel of a colour image).

    Raises:
        InputError: naming the PNG when it cannot be read or its size differs from ``shape``.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib and scikit-image

    try:
        with Image.open(path) as image:
            values = np.asarray(image)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(path, f"cannot read the PNG mask ({exc})") from None
    values = values[..., 0] if values.ndim == 3 else values
    if values.shape != shape:
        raise InputError(path, f"mask is {values.shape[0]}x{values.shape[1]} pixels, the DICOM slices are "
                               f"{shape[0]}x{shape[1]} (rows x columns)")
    return values


def png_labels(values: np.ndarray, modality: str) -> np.ndarray:
    """CHAOS PNG values as label values: CT non-zero -> 1; MR bands -> :data:`CHAOS_MR_LABELS` values.

    Example:
        >>> png_labels(np.array([0, 63, 126, 189, 252, 30]), "mr").tolist()
        [0, 1, 2, 3, 4, 0]
    """
    if modality == "ct":
        return (values > 0).astype(np.uint8)
    out = np.zeros(values.shape, np.uint8)
    for label, low, high in MR_BANDS:
        out[(values > low) & (values <= high)] = label
    return out


def stack_masks(ground: Path, volume: Volume, modality: str) -> np.ndarray:
    """The PNG masks of ``ground`` as a uint8 label volume on ``volume``'s grid (module docstring: mapping).

    Raises:
        InputError: naming the folder when the PNG count differs from the slice count, or a PNG.
    """
    record = dicom_record(volume)
    pngs = sorted((p for p in ground.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
                  key=natural_key)
    if len(pngs) != len(record.files):
        raise InputError(ground, f"{len(pngs)} PNG masks, but the DICOM series {volume.path} has "
                                 f"{len(record.files)} slices")
    slice_of = {f: k for k, f in enumerate(record.files)}
    labels = np.zeros(volume.shape, dtype=np.uint8, order="F")
    for png, dicom_file in zip(pngs, instance_order(record.files), strict=True):
        values = png_labels(read_png(png, (record.rows, record.columns)), modality)
        labels[:, :, slice_of[dicom_file]] = values[::-1, :].T
    return labels


def convert_series(series: ChaosSeries, out_dir: Path, liver_labels: str) -> ManifestRow:
    """The manifest row of one series, its mask written as ``out_dir/masks/<case>.nii.gz``.

    Raises:
        InputError: one line naming the folder or file that makes the series unusable.
    """
    if not series.dicom.is_dir():
        raise InputError(series.dicom, "DICOM folder not found")
    volume = load_dicom_series(series.dicom)
    mask = None
    if series.ground is not None:
        labels = stack_masks(series.ground, volume, series.modality)
        mask = save_mask(labels, volume, out_dir / "masks" / f"{series.case_id}.nii.gz")
    extra = {"liver_labels": liver_labels, "modality": series.modality, "sequence": series.sequence}
    return ManifestRow(series.case_id, series.patient_id, series.dicom, mask, extra=extra)


def from_chaos(root: str | Path, out_dir: str | Path, *, liver_labels: Sequence[int] | None = None
               ) -> list[ManifestRow]:
    """Rows of a CHAOS folder (the one holding ``CT/`` and/or ``MR/``); masks written under ``out_dir``.

    Args:
        root: The CHAOS ``Train_Sets`` (or ``Test_Sets``) folder.
        out_dir: Where ``masks/<case>.nii.gz`` go (the manifest's folder).
        liver_labels: Label values counted as liver; default: from the CT / MR label maps by name (1).

    Raises:
        InputError: naming the folder when it holds neither ``CT/`` nor ``MR/``, or no series is usable
            (each unusable series is listed; while some are usable they are only warned about).
    """
    folder, out = Path(root), Path(out_dir)
    if not (folder / "CT").is_dir() and not (folder / "MR").is_dir():
        raise InputError(folder, "no CT/ or MR/ folder (expected the CHAOS Train_Sets or Test_Sets folder)")
    found = Collected()
    for series in chaos_series(folder):
        names = CHAOS_CT_LABELS if series.modality == "ct" else CHAOS_MR_LABELS
        text = ",".join(str(int(v)) for v in liver_labels) if liver_labels is not None else labels_by_name(
            names, folder)
        try:
            found.add(convert_series(series, out, text), series.case_id)
        except InputError as exc:
            found.skip(series.case_id, str(exc))
    return finish(found, folder, "chaos", check_files=False)


__all__ = ["CHAOS_CT_LABELS", "CHAOS_MR_LABELS", "MR_BANDS", "ChaosSeries", "chaos_series", "convert_series",
           "from_chaos", "instance_order", "natural_key", "png_labels", "read_png", "stack_masks"]

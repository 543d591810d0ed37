"""Assembling one DICOM series into a volume: headers, slice grid, pixels and the case record.

Used by :func:`livercad.io.dicom.load_dicom_series` (the public entry point, whose docstring gives the
decisions); every failure becomes a one-line :class:`~livercad.errors.InputError` naming the file (or the
series folder) and the series.

Example:
    >>> import tempfile, numpy as np
    >>> from livercad.io.dicom_scan import scan_folder
    >>> from livercad.io.dicom_synth import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(np.zeros((2, 3, 4), np.int16), folder, slice_step=-3.0)
    >>> series = scan_folder(folder).series[0]
    >>> grid = series_grid(series, read_headers(series))
    >>> grid.spacing, read_pixels(series, grid, 3, 4).shape
    ((1.0, 1.0, 3.0), (4, 3, 2))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from livercad.errors import InputError
from livercad.io.dicom_geometry import (
    GeometryError,
    SliceGeometry,
    check_uniform,
    series_affine,
    single_image_step,
    slice_geometry,
    slice_step,
    sort_slices,
    ultrasound_spacing,
)
from livercad.io.dicom_meta import DicomRecord, contrast_phase
from livercad.io.dicom_pixels import PixelError, modality_values, transfer_syntax
from livercad.io.dicom_scan import Series, UnreadableDicom, read_header


@dataclass(frozen=True)
class SeriesGrid:
    """Where the slices go: files in slice order, their headers, affine, spacing and how it was found."""

    order: list[tuple[Path, Dataset]]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    spacing_source: str
    patient_geometry: bool


def read_headers(series: Series) -> list[tuple[Path, Dataset]]:
    """(file, header without pixel data) of every file of the series; unreadable files refused."""
    out = []
    for f in series.files:
        if not f.is_file():
            raise InputError(f, f"{series.label}: file not found (removed since the folder was scanned?)")
        try:
            ds = read_header(f)
        except UnreadableDicom as exc:
            raise InputError(f, f"{series.label}: {exc}") from None
        if ds is None:
            raise InputError(f, f"{series.label}: not a DICOM file")
        out.append((f, ds))
    return out


def single_grid(path: Path, ds: Dataset, geo: SliceGeometry) -> SeriesGrid:
    """Geometry of a one-image series: patient geometry when present, else an axial plane at the origin."""
    patient = geo.position is not None and geo.orientation is not None
    row_dir, col_dir = geo.orientation if patient else (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
    spacing, source = geo.pixel_spacing, "PixelSpacing"
    if spacing is None:
        spacing, source = ultrasound_spacing(ds), "SequenceOfUltrasoundRegions"
    if spacing is None:
        spacing, source = (1.0, 1.0), "unknown"
    step = single_image_step(ds, np.cross(row_dir, col_dir))
    origin = geo.position if patient else np.zeros(3)
    affine = series_affine(row_dir, col_dir, spacing, origin, step, geo.matrix[0])
    return SeriesGrid([(path, ds)], affine, (spacing[1], spacing[0], float(np.linalg.norm(step))), source, patient)


def _number(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def series_grid(series: Series, headers: list[tuple[Path, Dataset]]) -> SeriesGrid:
    """Slice order and affine of the series (GeometryError -> InputError naming the file and series)."""
    try:
        geos = [slice_geometry(ds, f) for f, ds in headers]
        if len(headers) == 1:
            return single_grid(*headers[0], geos[0])
        check_uniform(geos)
        ordered = sort_slices(geos)
        by_file = dict(headers)
        step = slice_step(ordered, _number(by_file[ordered[0].file].get("GantryDetectorTilt")))
    except GeometryError as exc:
        raise InputError(exc.file or series_folder(series), f"{series.label}: {exc.reason}") from None
    first = ordered[0]
    row_dir, col_dir = first.orientation  # type: ignore[misc]
    affine = series_affine(row_dir, col_dir, first.pixel_spacing, first.position, step,  # type: ignore[arg-type]
                           first.matrix[0])
    normal_step = abs(float(step @ np.cross(row_dir, col_dir)))
    spacing = (first.pixel_spacing[1], first.pixel_spacing[0], normal_step)  # type: ignore[index]
    return SeriesGrid([(g.file, by_file[g.file]) for g in ordered], affine, spacing, "PixelSpacing", True)


def series_folder(series: Series) -> Path:
    """The deepest folder holding all the series' files (what messages and ``Volume.path`` name)."""
    return Path(os.path.commonpath([str(f.parent) for f in series.files]))


def read_pixels(series: Series, grid: SeriesGrid, rows: int, columns: int) -> np.ndarray:
    """Float32 ``(columns, rows, slices)`` F-ordered, ``data[i, j, k] = slice_k[rows - 1 - j, i]``."""
    data = np.empty((columns, rows, len(grid.order)), dtype=np.float32, order="F")
    for k, (path, _) in enumerate(grid.order):
        try:
            ds = pydicom.dcmread(path)
            values = modality_values(ds, path)
        except PixelError as exc:
            raise InputError(path, f"{series.label}: {exc}") from None
        except (OSError, EOFError, ValueError) as exc:
            raise InputError(path, f"{series.label}: cannot read file ({type(exc).__name__}: {exc})") from None
        if values.shape != (rows, columns):
            raise InputError(path, f"{series.label}: decoded image is {values.shape[0]}x{values.shape[1]}, "
                                   f"the header says {rows}x{columns}")
        data[:, :, k] = values[::-1, :].T
    return data


def build_record(series: Series, grid: SeriesGrid) -> DicomRecord:
    """The case record (``Volume.header``) of a series laid out on ``grid``."""
    first = grid.order[0][1]
    phase, source = contrast_phase(first.get("SeriesDescription"), first.get("ContrastBolusAgent"),
                                   first.get("ContrastBolusRoute"), first.get("ProtocolName"))
    return DicomRecord(
        case_id=series.case_id, modality=series.modality, series_description=series.description,
        series_number=series.number, contrast_phase=phase, contrast_phase_source=source,
        study_uid=series.study_uid, series_uid=series.uid,
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID") or "") or None,
        sop_instance_uids=tuple(str(ds.get("SOPInstanceUID") or "") for _, ds in grid.order),
        files=tuple(p for p, _ in grid.order), rows=int(first.Rows), columns=int(first.Columns),
        spacing_known=grid.spacing_source != "unknown", spacing_source=grid.spacing_source,
        patient_geometry=grid.patient_geometry, transfer_syntax=transfer_syntax(first).name,
        skipped=tuple(series.skipped))


__all__ = ["SeriesGrid", "build_record", "read_headers", "read_pixels", "series_folder", "series_grid", "single_grid"]

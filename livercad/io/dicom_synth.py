"""Write small, valid DICOM image series from numpy arrays (tests, demos, interoperability checks).

The geometry is written exactly as DICOM PS3.3 C.7.6.2.1.1 defines it, independently of the reader
(:mod:`livercad.io.dicom`): slice ``n`` (``frames[n]``, shape ``(rows, columns)``) gets
``ImagePositionPatient = origin + n * slice_step * slice_dir`` (LPS mm), ``ImageOrientationPatient =
row_dir + col_dir`` (``row_dir``: direction of increasing column index), ``PixelSpacing =
[row spacing, column spacing]``. Files are written under random names in random order, and instance
numbers can be scrambled, so a reader that trusts file names or instance numbers fails the tests.

Example:
    >>> import tempfile, numpy as np, pydicom
    >>> frames = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    >>> files = write_series(frames, tempfile.mkdtemp(), pixel_spacing=(0.5, 0.7), slice_step=2.0)
    >>> sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files)
    [0.0, 2.0]
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, UltrasoundImageStorage, generate_uid

_SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage, "US": UltrasoundImageStorage}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _unit(v: Sequence[float]) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    return arr / np.linalg.norm(arr)


def base_dataset(modality: str = "CT", *, study_uid: str | None = None, series_uid: str | None = None,
                 frame_uid: str | None = None, sop_class: str | None = None) -> Dataset:
    """A dataset with patient, study, series and equipment attributes filled (no pixels, no geometry).

    Example:
        >>> base_dataset("MR").Modality
        'MR'
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class or _SOP_CLASS.get(modality, _SECONDARY_CAPTURE)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    today = _dt.date(2026, 1, 2).strftime("%Y%m%d")
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Liver", "LC0001", "19700101", "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = frame_uid or generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "A1", ""
    ds.Modality, ds.Manufacturer, ds.PositionReferenceIndicator = modality, "livercad", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    return ds


def _set_pixels(ds: Dataset, frame: np.ndarray) -> None:
    arr = np.ascontiguousarray(frame)
    if arr.dtype not in (np.int16, np.uint16, np.uint8, np.int8):
        raise ValueError(f"stored pixel values must be int8/uint8/int16/uint16, got {arr.dtype}")
    photometric = "RGB" if arr.ndim == 3 else "MONOCHROME2"
    ds.set_pixel_data(arr, photometric, arr.dtype.itemsize * 8, generate_instance_uid=False)


def _geometry(ds: Dataset, row: np.ndarray, col: np.ndarray, position: np.ndarray,
              pixel_spacing: Sequence[float], thickness: float) -> None:
    """Write IOP, IPP, PixelSpacing and SliceThickness (values rounded to fit the DS value representation)."""
    ds.ImageOrientationPatient = [round(float(v), 10) for v in (*row, *col)]
    ds.ImagePositionPatient = [round(float(v), 6) for v in position]
    ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    ds.SliceThickness = float(thickness)


def write_series(frames: np.ndarray, folder: str | Path, *, row_dir: Sequence[float] = (1, 0, 0),
                 col_dir: Sequence[float] = (0, 1, 0), origin: Sequence[float] = (0, 0, 0),
                 pixel_spacing: Sequence[float] = (1.0, 1.0), slice_step: float = 1.0,
                 slice_dir: Sequence[float] | None = None, modality: str = "CT",
                 slope: float | None = None, intercept: float | None = None,
                 series_description: str = "", series_number: int = 1, study_uid: str | None = None,
                 series_uid: str | None = None, frame_uid: str | None = None, seed: int | None = 0,
                 extra: Mapping[str, Any] | None = None, per_slice: Mapping[int, Mapping[str, Any]] | None = None,
                 ) -> list[Path]:
    """Write ``frames`` (``(n_slices, rows, columns)`` int8/uint8/int16/uint16 stored values) as a series.

    Geometry is LPS as in the module docstring; a ``slice_dir`` off the normal makes a gantry-tilted
    series; ``slope``/``intercept`` are written when given (CT always gets both); ``None`` UIDs are new;
    ``seed`` shuffles file names and instance numbers (``None``: slice order); ``extra``/``per_slice`` are
    attributes (keyword -> value) for every file / for slice ``n`` only.

    Returns:
        The written files in slice order (index ``n`` holds ``frames[n]``).
    """
    out, row, col = Path(folder), _unit(row_dir), _unit(col_dir)
    out.mkdir(parents=True, exist_ok=True)
    step_dir = np.cross(row, col) if slice_dir is None else _unit(slice_dir)
    rng = np.random.default_rng(seed) if seed is not None else None
    order = rng.permutation(len(frames)) if rng is not None else np.arange(len(frames))
    common = base_dataset(modality, study_uid=study_uid, series_uid=series_uid, frame_uid=frame_uid)
    files: list[Path] = []
    for n, frame in enumerate(frames):
        ds = base_dataset(modality, study_uid=common.StudyInstanceUID, series_uid=common.SeriesInstanceUID,
                          frame_uid=common.FrameOfReferenceUID)
        ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = series_description, series_number, int(order[n]) + 1
        _geometry(ds, row, col, np.asarray(origin, float) + n * slice_step * step_dir, pixel_spacing, abs(slice_step))
        if slope is not None or intercept is not None or modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept = (1.0 if slope is None else slope), (intercept or 0.0)
        _set_pixels(ds, np.asarray(frame))
        for key, value in {**(extra or {}), **((per_slice or {}).get(n, {}))}.items():
            setattr(ds, key, value)
        files.append(out / (f"{ds.SOPInstanceUID[-12:]}.dcm" if rng is not None else f"slice{n:04d}.dcm"))
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def write_single_frame(frame: np.ndarray, path: str | Path, *, modality: str = "US",
                       pixel_spacing: Sequence[float] | None = None,
                       region_delta_cm: Sequence[float] | None = None, extra: Mapping[str, Any] | None = None,
                       ) -> Path:
    """Write one 2-D image without patient geometry (ultrasound style): no IPP/IOP/frame of reference.

    Args:
        frame: ``(rows, columns)`` or ``(rows, columns, 3)`` RGB uint8/uint16 values.
        path: The output file.
        modality: e.g. ``US``.
        pixel_spacing: PixelSpacing ``(row, column)`` mm, written when given.
        region_delta_cm: ``(PhysicalDeltaX, PhysicalDeltaY)`` in cm for one SequenceOfUltrasoundRegions item.
        extra: More attributes (keyword -> value).

    Returns:
        The written path.
    """
    ds = base_dataset(modality)
    del ds.FrameOfReferenceUID
    if pixel_spacing is not None:
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    if region_delta_cm is not None:
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = frame.shape[1] - 1, frame.shape[0] - 1
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
        region.PhysicalDeltaX, region.PhysicalDeltaY = float(region_delta_cm[0]), float(region_delta_cm[1])
        ds.SequenceOfUltrasoundRegions = [region]
    _set_pixels(ds, np.asarray(frame))
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
    return out


def read_positions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """(IPP, row_dir, col_dir, PixelSpacing as (row, col)) and (rows, cols) of one file, as stored.

    Example:
        >>> import tempfile, numpy as np
        >>> f = write_series(np.zeros((1, 2, 3), np.int16), tempfile.mkdtemp())[0]
        >>> read_positions(f)[3]
        (2, 3)
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    ps = np.asarray(ds.PixelSpacing, dtype=np.float64)
    return (np.asarray(ds.ImagePositionPatient, dtype=np.float64), np.stack([iop[:3], iop[3:]]), ps,
            (int(ds.Rows), int(ds.Columns)))


__all__ = ["base_dataset", "read_positions", "write_series", "write_single_frame"]

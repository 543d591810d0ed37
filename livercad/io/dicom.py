"""DICOM image series as livercad input: :func:`find_series` and :func:`load_dicom_series`.

Decisions:

* **One series = one case.** A folder holding several image series makes each series its own case, with
  the case id ``<sanitised SeriesDescription>_s<SeriesNumber>`` (the SeriesInstanceUID when there is no
  description; 8 hex digits of the UID's hash appended when two series would get the same id). Non-image
  objects (SR, PR, SEG, KO, RTSTRUCT, RT plans/doses, PDFs, DICOMDIR, localizers, screen captures) are
  skipped, not errors, and listed (:attr:`Series.skipped`, :attr:`DicomRecord.skipped`). Images without
  patient geometry (ultrasound) in one series become one 2-D case per file (``..._i<InstanceNumber>``).
* **Geometry as dcm2niix writes it.** Voxel axes are (column, row, slice), rows bottom-up, slices sorted
  along the normal of ImageOrientationPatient; the affine is RAS (see :mod:`livercad.io.dicom_geometry`).
  For the same series, dcm2niix's NIfTI and this :class:`~livercad.types.Volume` hold the same array and
  the same affine (tested), so a mask drawn on the dcm2niix conversion fits the DICOM volume.
* **Refused series**, each with a one-line :class:`~livercad.errors.InputError` naming the file or the
  series: a missing slice (a step > 1.5 x the median step), duplicate positions (several echoes, phases
  or time points in one series), slices off the regular grid, orientation / pixel spacing / matrix size
  changing within the series, **gantry tilt** above 0.1 degrees (refused rather than resampled: resampling
  would change the grid a DICOM-SEG must reference; convert with dcm2niix when a tilted series is
  needed), an undecodable or unknown transfer syntax, truncated files, multi-frame files, and a DICOMDIR
  passed as input (pass the folder of images instead).
* **Values.** Modality LUT or RescaleSlope/RescaleIntercept applied per slice (CT in HU); data are always
  float32 (``Volume.data``'s contract; exact for every 16-bit stored value with integer rescaling, so no
  int16 variant is needed). Compressed transfer syntaxes are decoded by pydicom's plugins; the choice and
  its measurement are in :mod:`livercad.io.dicom_pixels`.
* **Case record.** ``Volume.header`` is a :class:`DicomRecord` (modality, description, contrast phase,
  study / series / frame-of-reference UIDs, SOP instance UIDs and files in slice order, spacing flags,
  skipped objects). :func:`livercad.io.nifti_write.save_mask` accepts such a volume (it then writes a
  fresh NIfTI header with the volume's affine); :func:`livercad.io.dicom_seg.write_dicom_seg` writes the
  mask as DICOM-SEG referencing the source images.
* **2-D images** (ultrasound, a single CT slice) load as ``(columns, rows, 1)``; pixel spacing from
  PixelSpacing, else SequenceOfUltrasoundRegions, else 1 mm with ``spacing_known=False``.

Example:
    >>> import tempfile, numpy as np
    >>> from livercad.io.dicom_synth import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(np.zeros((3, 4, 5), np.int16), folder, pixel_spacing=(0.5, 0.7), slice_step=2.5,
    ...                  intercept=-1024.0, series_description="Portal venous", series_number=4)
    >>> [s.case_id for s in find_series(folder)]
    ['Portal_venous_s4']
    >>> vol = load_dicom_series(folder)
    >>> vol.shape, vol.spacing, vol.header.contrast_phase, float(vol.data.min())
    ((5, 4, 3), (0.7, 0.5, 2.5), 'portal-venous', -1024.0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from livercad.errors import InputError
from livercad.io.dicom_meta import DicomRecord, SkippedObject, modality_family
from livercad.io.dicom_scan import (
    DICOMDIR_SOP_CLASS,
    UNREADABLE,
    Series,
    UnreadableDicom,
    has_dicom_preamble,
    read_header,
    scan_files,
    scan_folder,
    sop_class_of,
)
from livercad.io.dicom_volume import build_record, read_headers, read_pixels, series_folder, series_grid
from livercad.types import Volume

logger = logging.getLogger(__name__)
_DICOMDIR = "a DICOMDIR is an index of a DICOM medium, not an image: pass the folder of images instead"


def is_dicom_file(path: str | Path) -> bool:
    """True for a file with the DICOM Part-10 preamble (``DICM`` at byte 128).

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> is_dicom_file(get_testdata_file("CT_small.dcm", download=False)), is_dicom_file(__file__)
        (True, False)
    """
    return Path(path).is_file() and has_dicom_preamble(Path(path))


def find_series(folder: str | Path) -> list[Series]:
    """The image series under ``folder`` (recursively), one case each, in case-id order.

    Raises:
        InputError: the folder does not exist, is a DICOMDIR, or holds no DICOM image series (the
            message counts what was skipped).
    """
    root = Path(folder)
    if root.is_file():
        ds = _safe_header(root)
        if ds is not None and sop_class_of(ds) == DICOMDIR_SOP_CLASS:
            raise InputError(root, _DICOMDIR)
        raise InputError(root, "expected a folder of DICOM files")
    if not root.is_dir():
        raise InputError(root, "folder not found")
    scan = scan_folder(root)
    for item in scan.skipped:
        logger.info("skipped %s: %s", item.path, item.reason)
    if not scan.series:
        kinds = sorted({s.reason for s in scan.skipped})
        raise InputError(root, f"no DICOM image series found ({len(scan.skipped)} objects skipped"
                               f"{': ' + '; '.join(kinds) if kinds else ''}; {len(scan.not_dicom)} non-DICOM files)")
    return sorted(scan.series, key=lambda s: s.case_id)


def _safe_header(path: Path) -> Dataset | None:
    try:
        return read_header(path)
    except UnreadableDicom:
        return None


def _resolve(source: Series | str | Path | Sequence[str | Path]) -> Series:
    """The one series a source names (a Series, a folder, a file or a list of files)."""
    if isinstance(source, Series):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            found = find_series(path)
            if len(found) > 1:
                raise InputError(path, f"folder holds {len(found)} image series "
                                       f"({', '.join(s.case_id for s in found)}); each series is its own case: "
                                       f"pass one series (find_series lists them)")
            return found[0]
        files = [path]
    else:
        files = [Path(p) for p in source]
    return _series_of_files(files)


def _series_of_files(files: list[Path]) -> Series:
    for f in files:
        if not f.is_file():
            raise InputError(f, "file not found")
        try:
            ds = read_header(f)
        except UnreadableDicom as exc:
            raise InputError(f, str(exc)) from None
        if ds is None:
            raise InputError(f, "not a DICOM file (no DICM preamble)")
        if sop_class_of(ds) == DICOMDIR_SOP_CLASS:
            raise InputError(f, _DICOMDIR)
    scan = scan_files(files)
    if not scan.series:
        reason = scan.skipped[0].reason if scan.skipped else "no image"
        raise InputError(files[0], f"not an image series: {reason}")
    if len(scan.series) > 1:
        raise InputError(files[0], f"the files belong to {len(scan.series)} series "
                                   f"({', '.join(s.case_id for s in scan.series)}): pass one series")
    return scan.series[0]


def _refuse_unreadable_neighbours(series: Series) -> None:
    """An unreadable DICOM file among the series' files may be one of its slices: refuse the series."""
    folders = {f.parent for f in series.files}
    for item in series.skipped:
        if item.kind == UNREADABLE and item.path.parent in folders:
            raise InputError(item.path, f"{series.label}: {item.reason}; it lies among the series' files and may "
                                        f"be one of its slices: repair or remove it")


def load_dicom_series(source: Series | str | Path | Sequence[str | Path]) -> Volume:
    """Read one DICOM image series into a float32 :class:`~livercad.types.Volume` (see the module docstring).

    Args:
        source: A :class:`Series` from :func:`find_series`, a folder holding exactly one image series,
            one DICOM file (a one-slice series or a 2-D image), or a list of the files of one series.

    Returns:
        The volume: ``data`` ``(columns, rows, slices)`` in modality units (HU for CT), RAS ``affine``,
        ``spacing`` (column, row, slice) mm, ``header`` a :class:`DicomRecord`, ``path`` the series folder
        (the file for a one-file series).

    Raises:
        InputError: one line naming the file (or the series folder) and the series, for every refused
            input listed in the module docstring.
    """
    series = _resolve(source)
    _refuse_unreadable_neighbours(series)
    headers = read_headers(series)
    for path, ds in headers:
        if "Rows" not in ds or "Columns" not in ds:
            raise InputError(path, f"{series.label}: no Rows/Columns: the file is truncated or holds no image")
    grid = series_grid(series, headers)
    first = grid.order[0][1]
    data = read_pixels(series, grid, int(first.Rows), int(first.Columns))
    record = build_record(series, grid)
    path = series.files[0] if len(series.files) == 1 else series_folder(series)
    logger.debug("loaded %s: %s shape %s spacing %s", path, series.label, data.shape, grid.spacing)
    return Volume(data=data, affine=grid.affine, header=record, spacing=grid.spacing, path=path,
                  original_shape=tuple(data.shape))


def dicom_record(volume: Volume) -> DicomRecord:
    """The :class:`DicomRecord` of a volume read by :func:`load_dicom_series`.

    Raises:
        InputError: the volume was not read from DICOM.
    """
    if not isinstance(volume.header, DicomRecord):
        raise InputError(volume.path, "not a DICOM volume (its header is not a DicomRecord)")
    return volume.header


__all__ = ["DicomRecord", "Series", "SkippedObject", "dicom_record", "find_series", "is_dicom_file",
           "load_dicom_series", "modality_family"]

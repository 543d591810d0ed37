"""Liver masks as DICOM Segmentation objects (highdicom), written next to the source series and read back.

:func:`write_dicom_seg` writes a BINARY SEG with one segment, "Liver" (SCT 10200004, category Anatomical
Structure SCT 91723000, algorithm type AUTOMATIC, algorithm "livercad"), whose frame ``k`` references the
source image of slice ``k`` (SOP instance UID in :attr:`DicomRecord.sop_instance_uids`) and carries its
plane position, in the source's FrameOfReferenceUID and study. Frames without liver are omitted (all are
kept when the mask is empty, as highdicom requires). The file is written atomically (temporary file, then
``os.replace``). :func:`read_dicom_seg` maps a SEG (livercad's or anyone's) back onto a DICOM volume's grid
through the source instances its frames reference.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from livercad.io.dicom import load_dicom_series
    >>> from livercad.io.dicom_synth import write_series
    >>> d = Path(tempfile.mkdtemp())
    >>> vol = load_dicom_series(write_series(np.zeros((3, 4, 5), np.int16), d / "ct"))
    >>> mask = np.zeros(vol.shape, np.uint8); mask[1:3, 0:2, 1] = 1
    >>> seg = write_dicom_seg(mask, vol, None, d / "liver.seg.dcm")
    >>> bool(np.array_equal(read_dicom_seg(seg, vol), mask > 0))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from livercad.errors import InputError
from livercad.io.atomic import atomic_write
from livercad.io.dicom_meta import DicomRecord
from livercad.types import Volume

LIVER_CODE = ("10200004", "SCT", "Liver")
CATEGORY_CODE = ("91723000", "SCT", "Anatomical Structure")
DEFAULT_SERIES_NUMBER = 9901
#: highdicom 0.28 packs the bits of frames with fewer pixels than this one frame at a time (padded), which
#: its own reader and pydicom do not expect; no clinical image is that small, so such images are refused.
MIN_FRAME_PIXELS = 8
_BUILD_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError)


def _record_of(series_info: DicomRecord | Volume) -> DicomRecord:
    record = series_info.header if isinstance(series_info, Volume) else series_info
    if not isinstance(record, DicomRecord):
        raise InputError(getattr(series_info, "path", None), "not a DICOM volume: DICOM-SEG needs the "
                                                             "DicomRecord of the source series")
    return record


def _ordered_sources(record: DicomRecord, sources: Sequence[Dataset | str | Path] | None,
                     out: Path) -> list[Dataset]:
    """The source headers in slice order (matched by SOP instance UID)."""
    items = list(record.files) if sources is None else list(sources)
    by_uid: dict[str, Dataset] = {}
    for item in items:
        ds = item if isinstance(item, Dataset) else pydicom.dcmread(item, stop_before_pixels=True)
        by_uid[str(ds.get("SOPInstanceUID") or "")] = ds
    missing = [k for k, uid in enumerate(record.sop_instance_uids) if uid not in by_uid]
    if missing:
        raise InputError(out, f"the source images lack {len(missing)} of the {len(record.sop_instance_uids)} "
                              f"slices of series {record.series_uid} (first: slice {missing[0]}, SOP instance "
                              f"{record.sop_instance_uids[missing[0]]})")
    return [by_uid[uid] for uid in record.sop_instance_uids]


def mask_to_frames(mask: np.ndarray, record: DicomRecord) -> np.ndarray:
    """``(slices, rows, columns)`` uint8 frames of a ``(columns, rows, slices)`` volume mask.

    ``frames[k, r, c] = mask[c, rows - 1 - r, k] > 0`` (the volume's rows are bottom-up).

    Example:
        >>> r = DicomRecord("c", "CT", "", None, "unknown", "none", "1", "2", None, ("3",), (Path("a"),), 2, 3)
        >>> m = np.zeros((3, 2, 1), bool); m[2, 0, 0] = True
        >>> mask_to_frames(m, r)[0].tolist()
        [[0, 0, 0], [0, 0, 1]]
    """
    expected = (record.columns, record.rows, len(record.sop_instance_uids))
    if mask.shape != expected:
        raise ValueError(f"mask shape {mask.shape} differs from the series grid {expected} (columns, rows, slices)")
    return np.ascontiguousarray((mask[:, ::-1, :] > 0).transpose(2, 1, 0)).astype(np.uint8)


def frames_to_mask(frames: np.ndarray) -> np.ndarray:
    """Inverse of :func:`mask_to_frames`: ``(slices, rows, columns)`` -> bool ``(columns, rows, slices)``."""
    return np.asfortranarray(frames.transpose(2, 1, 0)[:, ::-1, :] > 0)


def _segment_description() -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from livercad import __version__

    algorithm = hd.AlgorithmIdentificationSequence(name="livercad", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    return hd.seg.SegmentDescription(segment_number=1, segment_label="Liver",
                                     segmented_property_category=Code(*CATEGORY_CODE),
                                     segmented_property_type=Code(*LIVER_CODE),
                                     algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                     algorithm_identification=algorithm)


def _pixel_measures(source: Dataset) -> Any:
    """Explicit pixel measures when the source has PixelSpacing but no SliceThickness (2-D ultrasound).

    highdicom copies PixelSpacing alone into the SEG, then refuses to read a PixelMeasuresSequence without
    SliceThickness; SpacingBetweenSlices, else 1 mm (the volume's placeholder) is written as the thickness.
    """
    if "PixelSpacing" not in source or source.get("SliceThickness") not in (None, ""):
        return None
    import highdicom as hd

    thickness = float(source.get("SpacingBetweenSlices") or 1.0)
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in source.PixelSpacing], slice_thickness=thickness)


def _build(frames: np.ndarray, sources: list[Dataset], series_number: int, series_description: str) -> Any:
    """The highdicom Segmentation of ``frames`` (slice order = ``sources`` order)."""
    import highdicom as hd

    from livercad import __version__

    return hd.seg.Segmentation(
        source_images=sources, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment_description()], series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="livercad",
        manufacturer_model_name="livercad", software_versions=__version__, device_serial_number="0",
        series_description=series_description, content_label="LIVER",
        content_description="Liver segmented by livercad", omit_empty_frames=bool(frames.any()),
        pixel_measures=_pixel_measures(sources[0]))


def write_dicom_seg(mask: np.ndarray, series_info: DicomRecord | Volume,
                    source_datasets_or_files: Sequence[Dataset | str | Path] | None, out_path: str | Path, *,
                    series_number: int = DEFAULT_SERIES_NUMBER,
                    series_description: str = "livercad liver segmentation") -> Path:
    """Write ``mask`` (on the DICOM volume's grid) as a binary DICOM-SEG with one segment "Liver".

    Args:
        mask: Bool or integer ``(columns, rows, slices)`` on the grid of the volume read by
            :func:`livercad.io.dicom.load_dicom_series` (non-zero = liver).
        series_info: That volume, or its :class:`DicomRecord` (``volume.header``).
        source_datasets_or_files: The source images (datasets or files, in any order; headers suffice);
            ``None`` reads the record's files.
        out_path: The SEG file (parent folders are created); ``series_number``/``series_description``: its series.

    Returns:
        The written path.

    Raises:
        InputError: naming ``out_path``: wrong mask shape, images under 8 pixels, source images missing or
            not those of the series, or headers highdicom cannot build a SEG from.
    """
    out = Path(out_path)
    record = _record_of(series_info)
    try:
        frames = mask_to_frames(np.asarray(mask), record)
    except ValueError as exc:
        raise InputError(out, str(exc)) from None
    if record.rows * record.columns < MIN_FRAME_PIXELS:
        raise InputError(out, f"images of {record.rows}x{record.columns} pixels are too small for a DICOM-SEG "
                              f"(highdicom pads bit-packed frames of fewer than {MIN_FRAME_PIXELS} pixels)")
    sources = _ordered_sources(record, source_datasets_or_files, out)
    try:
        seg = _build(frames, sources, series_number, series_description)
    except _BUILD_ERRORS as exc:
        raise InputError(out, f"cannot build a DICOM-SEG for series {record.series_uid}: "
                              f"{type(exc).__name__}: {exc}") from None
    return atomic_write(out, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


def _liver_segment(seg: Any, path: Path) -> int:
    numbers = list(seg.segment_numbers)
    if len(numbers) == 1:
        return int(numbers[0])
    from pydicom.sr.coding import Code

    liver = seg.get_segment_numbers(segmented_property_type=Code(*LIVER_CODE))
    if len(liver) == 1:
        return int(liver[0])
    raise InputError(path, f"SEG has segments {numbers} and {len(liver)} of them are Liver (SCT 10200004): "
                           f"name the segment number")


def read_dicom_seg(path: str | Path, like: Volume | DicomRecord, *, segment_number: int | None = None) -> np.ndarray:
    """A SEG's segment as a bool mask on ``like``'s grid ``(columns, rows, slices)``.

    Frames are matched to slices through the source SOP instances they reference; slices without a
    frame are empty.

    Args:
        path: The SEG file.
        like: The DICOM volume (or its record) the SEG was made on.
        segment_number: The segment; default the only one, else the one whose type is Liver.

    Raises:
        InputError: naming ``path``: not a SEG, no such or ambiguous segment, or frames referencing
            images that are not in the series.
    """
    import highdicom as hd

    file = Path(path)
    record = _record_of(like)
    try:
        seg = hd.seg.segread(file)
    except _BUILD_ERRORS as exc:
        raise InputError(file, f"not a readable DICOM Segmentation ({type(exc).__name__}: {exc})") from None
    referenced = {str(item.get("SeriesInstanceUID")) for item in seg.get("ReferencedSeriesSequence") or []}
    if record.series_uid not in referenced:
        raise InputError(file, f"SEG does not fit series {record.series_uid}: it references "
                               f"{', '.join(sorted(referenced)) or 'no series'}")
    number = segment_number if segment_number is not None else _liver_segment(seg, file)
    try:
        frames = seg.get_pixels_by_source_instance(list(record.sop_instance_uids), segment_numbers=[number],
                                                   assert_missing_frames_are_empty=True)
    except _BUILD_ERRORS as exc:
        raise InputError(file, f"SEG does not fit series {record.series_uid} ({type(exc).__name__}: {exc})") from None
    return frames_to_mask(frames[..., 0])


__all__ = ["CATEGORY_CODE", "LIVER_CODE", "frames_to_mask", "mask_to_frames", "read_dicom_seg", "write_dicom_seg"]

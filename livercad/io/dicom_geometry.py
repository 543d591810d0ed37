"""Geometry of a DICOM image series: slice order, consistency checks and the RAS voxel->world affine.

Conventions (identical to dcm2niix, checked against it in the tests):

* DICOM world coordinates are LPS (PS3.3 C.7.6.2.1.1): pixel (row ``r``, column ``c``) of an image is at
  ``IPP + X * PixelSpacing[1] * c + Y * PixelSpacing[0] * r`` with ``X``/``Y`` the row/column direction
  cosines of ImageOrientationPatient. livercad's affines are RAS: x and y are negated.
* Voxel axes are (column ``i``, row ``j``, slice ``k``): ``data[i, j, k] = frame_k[rows - 1 - j, i]``. The
  rows are stored bottom-up, as dcm2niix writes them, so that the NIfTI dcm2niix makes of a series and
  the :class:`~livercad.types.Volume` read from it have the same array and the same affine.
* Slices are sorted by ``dot(normal, IPP)``, ``normal = X x Y``, ascending.

Example:
    >>> import numpy as np
    >>> a = series_affine(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), (0.5, 0.8), np.array([10.0, 0, 0]),
    ...                   np.array([0, 0, 2.0]), rows=10)
    >>> a[:3].round(3).tolist()
    [[-0.8, 0.0, 0.0, -10.0], [0.0, 0.5, 0.0, -4.5], [0.0, 0.0, 2.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: Largest angle (degrees) between the slice step and the slice normal accepted as "no gantry tilt".
MAX_TILT_DEG = 0.1
#: Largest change of an ImageOrientationPatient cosine within one series.
ORIENTATION_TOLERANCE = 1e-4
#: Relative tolerance for PixelSpacing to count as unchanged within one series.
SPACING_RTOL = 1e-4
#: A slice position may lie this far (mm) from the regular grid: max(abs, rel * slice step).
POSITION_ATOL_MM, POSITION_RTOL = 0.01, 0.01
#: Two slices closer than this (mm) along the normal share a position.
DUPLICATE_MM = 0.01
#: A step larger than this many median steps is a missing slice.
GAP_FACTOR = 1.5


class GeometryError(ValueError):
    """A series whose slices cannot form one regular grid; ``file`` names the offending file."""

    def __init__(self, reason: str, file: Path | None = None) -> None:
        self.reason, self.file = reason, file
        super().__init__(reason)


@dataclass(frozen=True)
class SliceGeometry:
    """Plane geometry of one single-frame image (LPS, mm), as stored in the file."""

    file: Path
    position: np.ndarray | None      # ImagePositionPatient
    orientation: np.ndarray | None   # ImageOrientationPatient, shape (2, 3): row dir X, column dir Y
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    matrix: tuple[int, int]          # (Rows, Columns)


def _floats(ds: Dataset, keyword: str, count: int, file: Path) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        arr = np.asarray([float(v) for v in (value if isinstance(value, Sequence) else [value])], np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"{keyword} {value!r} is not numeric", file) from None
    if arr.size != count or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{keyword} must hold {count} finite numbers, got {list(value)}", file)
    return arr


def slice_geometry(ds: Dataset, file: Path) -> SliceGeometry:
    """Read IPP, IOP, PixelSpacing and the matrix size of one image header (validated).

    Raises:
        GeometryError: non-numeric values, or an orientation whose rows are not orthonormal.
    """
    ipp = _floats(ds, "ImagePositionPatient", 3, file)
    iop = _floats(ds, "ImageOrientationPatient", 6, file)
    ps = _floats(ds, "PixelSpacing", 2, file)
    orientation = None
    if iop is not None:
        x, y = iop[:3], iop[3:]
        if abs(np.linalg.norm(x) - 1) > 1e-3 or abs(np.linalg.norm(y) - 1) > 1e-3 or abs(x @ y) > 1e-3:
            raise GeometryError(f"ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors", file)
        orientation = np.stack([x / np.linalg.norm(x), y / np.linalg.norm(y)])
    if ps is not None and not np.all(ps > 0):
        raise GeometryError(f"PixelSpacing {ps.tolist()} must be > 0", file)
    spacing = None if ps is None else (float(ps[0]), float(ps[1]))
    return SliceGeometry(file, ipp, orientation, spacing, (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)))


def series_affine(row_dir: np.ndarray, col_dir: np.ndarray, pixel_spacing: Sequence[float], first_ipp: np.ndarray,
                  step: np.ndarray, rows: int) -> np.ndarray:
    """The RAS affine of voxel ``(i, j, k)`` = (column, rows-1-row, slice) (see the module docstring).

    Args:
        row_dir, col_dir: IOP row / column direction cosines (LPS).
        pixel_spacing: DICOM PixelSpacing ``(row spacing, column spacing)`` mm.
        first_ipp: IPP of slice ``k = 0`` (LPS).
        step: LPS vector from one slice origin to the next.
        rows: Rows of the image (the j axis runs bottom-up).
    """
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]
    lps[:3, 1] = -col_dir * pixel_spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first_ipp + col_dir * pixel_spacing[0] * (rows - 1)
    ras = np.eye(4)
    ras[:3] = LPS_TO_RAS @ lps[:3]
    return ras


def check_uniform(slices: Sequence[SliceGeometry]) -> None:
    """All slices share matrix size, orientation and pixel spacing, and have all three.

    Raises:
        GeometryError: naming the first file that differs from the first slice, and both values.
    """
    first = slices[0]
    for s in slices:
        if s.position is None or s.orientation is None or s.pixel_spacing is None:
            missing = [n for n, v in (("ImagePositionPatient", s.position), ("ImageOrientationPatient", s.orientation),
                                      ("PixelSpacing", s.pixel_spacing)) if v is None]
            raise GeometryError(f"{', '.join(missing)} missing: slices cannot be placed in a volume", s.file)
        if s.matrix != first.matrix:
            raise GeometryError(f"matrix size changes within the series: {s.matrix[0]}x{s.matrix[1]} here, "
                                f"{first.matrix[0]}x{first.matrix[1]} in {first.file.name}", s.file)
        if np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOLERANCE:  # type: ignore[operator]
            raise GeometryError(f"orientation changes within the series: ImageOrientationPatient "
                                f"{np.round(s.orientation, 5).ravel().tolist()} here, "
                                f"{np.round(first.orientation, 5).ravel().tolist()} in {first.file.name}", s.file)
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=SPACING_RTOL, atol=0):  # type: ignore[arg-type]
            raise GeometryError(f"pixel spacing changes within the series: {list(s.pixel_spacing)} mm here, "  # type: ignore[arg-type]
                                f"{list(first.pixel_spacing)} mm in {first.file.name}", s.file)  # type: ignore[arg-type]


def sort_slices(slices: Sequence[SliceGeometry]) -> list[SliceGeometry]:
    """Slices ordered by position along the normal, ascending; duplicates and gaps refused.

    Raises:
        GeometryError: two slices at the same position, or a step larger than 1.5 x the median step.
    """
    normal = np.cross(*slices[0].orientation)  # type: ignore[misc]
    ordered = sorted(slices, key=lambda s: float(normal @ s.position))
    pos = np.array([float(normal @ s.position) for s in ordered])
    steps = np.diff(pos)
    for k in np.flatnonzero(steps < DUPLICATE_MM):
        a, b = ordered[k], ordered[k + 1]
        same = int(np.sum(np.abs(pos - pos[k]) < DUPLICATE_MM))
        raise GeometryError(f"duplicate slice position {pos[k]:.3f} mm along the normal ({same} images, e.g. "
                            f"{a.file.name} and {b.file.name}); several echoes, phases or time points in one "
                            f"series are not supported: pass one of them", b.file)
    if len(steps):
        median = float(np.median(steps))
        big = np.flatnonzero(steps > GAP_FACTOR * median)
        if big.size:
            k = int(big[0])
            raise GeometryError(f"missing slice: gap of {steps[k]:.3f} mm between positions {pos[k]:.3f} "
                                f"({ordered[k].file.name}) and {pos[k + 1]:.3f} mm ({ordered[k + 1].file.name}), "
                                f"{steps[k] / median:.1f} x the median spacing {median:.3f} mm", ordered[k + 1].file)
    return ordered


def slice_step(ordered: Sequence[SliceGeometry], gantry_tilt: float | None = None) -> np.ndarray:
    """The LPS vector between consecutive slices, after checking the grid is regular and untilted.

    Args:
        ordered: The slices from :func:`sort_slices` (at least two).
        gantry_tilt: The GantryDetectorTilt attribute, quoted in the tilt message.

    Raises:
        GeometryError: a gantry tilt above :data:`MAX_TILT_DEG`, or a slice off the regular grid.
    """
    first, last = ordered[0].position, ordered[-1].position
    step = (last - first) / (len(ordered) - 1)  # type: ignore[operator]
    normal = np.cross(*ordered[0].orientation)  # type: ignore[misc]
    along = float(step @ normal)
    shift = float(np.linalg.norm(step - along * normal))
    tilt = math.degrees(math.atan2(shift, abs(along)))
    if tilt > MAX_TILT_DEG:
        quoted = f" (GantryDetectorTilt {gantry_tilt:g})" if gantry_tilt else ""
        raise GeometryError(f"gantry tilt of {tilt:.2f} degrees{quoted}: slices are shifted {shift:.3f} mm "
                            f"in-plane per slice; tilted series are refused: reconstruct without tilt or "
                            f"convert with dcm2niix (which resamples tilted series) and pass the NIfTI", None)
    tolerance = max(POSITION_ATOL_MM, POSITION_RTOL * abs(along))
    for k, s in enumerate(ordered):
        off = float(np.linalg.norm(s.position - (first + k * step)))  # type: ignore[operator]
        if off > tolerance:
            raise GeometryError(f"uneven slice spacing: slice {k} lies {off:.3f} mm off the regular grid of "
                                f"step {abs(along):.3f} mm (tolerance {tolerance:.3f} mm)", s.file)
    return step


def ultrasound_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from SequenceOfUltrasoundRegions, or ``None``.

    Uses the largest 2-D tissue region (RegionSpatialFormat 1) whose PhysicalUnitsX/YDirection are cm (3);
    PhysicalDeltaY is the row spacing, PhysicalDeltaX the column spacing.

    Example:
        >>> from pydicom.dataset import Dataset
        >>> region = Dataset()
        >>> region.RegionSpatialFormat, region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 1, 3, 3
        >>> region.PhysicalDeltaX, region.PhysicalDeltaY = 0.02, 0.03
        >>> ds = Dataset(); ds.SequenceOfUltrasoundRegions = [region]
        >>> tuple(round(v, 6) for v in ultrasound_spacing(ds))
        (0.3, 0.2)
    """
    best: tuple[float, tuple[float, float]] | None = None
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        try:
            units = (int(region.get("PhysicalUnitsXDirection", 0)), int(region.get("PhysicalUnitsYDirection", 0)))
            dx, dy = abs(float(region.get("PhysicalDeltaX", 0))), abs(float(region.get("PhysicalDeltaY", 0)))
            area = (float(region.get("RegionLocationMaxX1", 1)) - float(region.get("RegionLocationMinX0", 0))) * \
                   (float(region.get("RegionLocationMaxY1", 1)) - float(region.get("RegionLocationMinY0", 0)))
        except (TypeError, ValueError):
            continue
        if int(region.get("RegionSpatialFormat", 1) or 0) != 1 or units != (3, 3) or not (dx > 0 and dy > 0):
            continue
        if best is None or area > best[0]:
            best = (area, (dy * 10.0, dx * 10.0))  # cm -> mm
    return None if best is None else best[1]


def single_image_step(ds: Dataset, normal: np.ndarray) -> np.ndarray:
    """Third affine column of a one-slice volume: the normal times SpacingBetweenSlices, SliceThickness or 1 mm."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = abs(float(ds.get(keyword) or 0))
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return normal * value
    return normal * 1.0


__all__ = ["GeometryError", "SliceGeometry", "check_uniform", "series_affine", "slice_geometry", "slice_step",
           "sort_slices", "LPS_TO_RAS", "MAX_TILT_DEG", "single_image_step", "ultrasound_spacing"]

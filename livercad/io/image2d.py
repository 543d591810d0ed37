"""2-D image files (PNG, JPEG) as livercad input: :func:`load_image2d`.

Decisions:

* **Layout of the DICOM loader's 2-D images.** ``data`` is ``(columns, rows, 1)`` float32 with the rows
  bottom-up, ``data[i, j, 0] = pixel[rows - 1 - j, i]``, and the affine is the one
  :func:`livercad.io.dicom.load_dicom_series` gives an image without patient geometry: an axial plane with
  its top-left pixel at the origin (RAS; see :mod:`livercad.io.dicom_geometry`). A frame exported as PNG and
  the same frame as DICOM therefore give the same volume (tested), and the mask written for it is a NIfTI
  ``(columns, rows, 1)`` on that grid. (Phantom ultrasound frames are 2-D NIfTI files with the probe's
  oblique affine; an image file carries no geometry, so the plane is placed as DICOM does.)
* **Grey values.** Greyscale images keep their values (8 or 16 bit). Colour images (RGB, RGBA, palette,
  CMYK) become one channel: when the three channels are equal that channel, else BT.601 luminance
  ``0.299 R + 0.587 G + 0.114 B`` (as DICOM colour images); alpha is dropped. A JPEG's EXIF orientation is
  applied, so the image is the one viewers show.
* **Spacing.** An image file has no pixel spacing: the caller gives it as ``spacing=(sx, sy)`` mm (``sx``
  between columns, ``sy`` between rows); without it the spacing is 1 mm, a placeholder, and the record says
  ``spacing_known=False``. The third voxel size is always a 1 mm placeholder (no slice thickness).
* **Refused**, each with a one-line :class:`~livercad.errors.InputError` naming the file: a missing or empty
  file, a file Pillow cannot identify or that is not PNG/JPEG, a truncated or corrupt image, an animated
  (multi-frame) image, and an image above Pillow's decompression-bomb limit.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "us.png"
    >>> Image.fromarray(np.arange(6, dtype=np.uint8).reshape(2, 3)).save(path)
    >>> vol = load_image2d(path, spacing=(0.3, 0.2))
    >>> vol.shape, vol.spacing, vol.data[:, :, 0].tolist()
    ((3, 2, 1), (0.3, 0.2, 1.0), [[3.0, 0.0], [4.0, 1.0], [5.0, 2.0]])
    >>> vol.header.spacing_known, load_image2d(path).header.spacing_known
    (True, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livercad.errors import InputError
from livercad.io.dicom_geometry import series_affine
from livercad.types import Volume

#: File name endings read as 2-D images (case-insensitive).
IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pillow formats accepted (MPO: the multi-picture JPEG of some cameras; its first picture is read).
FORMATS = ("PNG", "JPEG", "MPO")
BT601_LUMA = np.array([0.299, 0.587, 0.114])
_GREY_MODES = ("L", "I;16", "I;16L", "I;16B", "I", "F")
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Image2DRecord:
    """What livercad keeps of a 2-D image file (``Volume.header`` of a PNG/JPEG volume).

    Attributes:
        path: The file.
        format: ``PNG`` or ``JPEG``.
        mode: Pillow's mode of the stored image (``L``, ``I;16``, ``RGB``, ``RGBA``, ``P`` ...).
        rows, columns: The image matrix; the volume's shape is ``(columns, rows, 1)``.
        colour: ``grey`` | ``equal-channels`` (colour file, identical channels) | ``luminance`` (BT.601).
        exif_rotated: ``True`` when an EXIF orientation was applied.
        spacing_known: ``False`` when no spacing was given (the 1 mm spacing is then a placeholder).
        spacing_source: ``given`` (the caller's ``spacing``) or ``unknown``.
    """

    path: Path
    format: str
    mode: str
    rows: int
    columns: int
    colour: str
    exif_rotated: bool
    spacing_known: bool
    spacing_source: str

    @property
    def modality_family(self) -> str | None:
        """Always ``None``: an image file does not say which modality it shows."""
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict (the path as a string) for case records."""
        return {**asdict(self), "path": str(self.path)}


def planar_affine(columns: int, rows: int, spacing: Sequence[float]) -> np.ndarray:
    """RAS affine of a ``(columns, rows, 1)`` image without geometry: axial, top-left pixel at the origin.

    The affine :func:`livercad.io.dicom.load_dicom_series` gives a DICOM image without patient geometry
    and with PixelSpacing ``(spacing[1], spacing[0])`` (third column: 1 mm along the normal).

    Example:
        >>> planar_affine(4, 3, (0.5, 2.0))[:3].tolist()
        [[-0.5, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, -4.0], [0.0, 0.0, 1.0, 0.0]]
    """
    del columns  # the origin is the top-left pixel: only the number of rows moves it
    sx, sy = float(spacing[0]), float(spacing[1])
    x, y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    return series_affine(x, y, (sy, sx), np.zeros(3), np.array([0.0, 0.0, 1.0]), rows)


def check_spacing(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    """``spacing`` as two floats, or ``None``.

    Raises:
        ValueError: not two finite numbers > 0 (mm).

    Example:
        >>> check_spacing([0.5, 1]), check_spacing(None)
        ((0.5, 1.0), None)
    """
    if spacing is None:
        return None
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be two pixel sizes in mm (x, y), got {spacing!r}") from None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be two finite pixel sizes > 0 mm (x, y), got {spacing!r}")
    return values[0], values[1]


def _open(path: Path) -> tuple[Any, str, bool]:
    """(decoded Pillow image with its EXIF orientation applied, format, rotated), refused with one line."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    try:
        img = Image.open(path)
        fmt, frames = str(img.format), int(getattr(img, "n_frames", 1))
        if fmt in FORMATS and not (fmt == "PNG" and frames > 1):
            img.load()
            rotated = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1) != 1
            img = ImageOps.exif_transpose(img) if rotated else img
    except UnidentifiedImageError:
        raise InputError(path, "not a PNG or JPEG image (Pillow does not recognise the content)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(path, f"truncated or corrupt image ({type(exc).__name__}: {exc})") from None
    if fmt not in FORMATS:
        raise InputError(path, f"a {fmt} image; expected PNG or JPEG")
    if frames > 1 and fmt == "PNG":
        raise InputError(path, f"animated PNG with {frames} frames; expected one 2-D image")
    return img, ("JPEG" if fmt == "MPO" else fmt), rotated


def _grey(img: Any) -> tuple[np.ndarray, str]:
    """``(rows, columns)`` values of a Pillow image and how colour was handled (see the module docstring)."""
    if img.mode in _GREY_MODES:
        return np.asarray(img), "grey"
    if img.mode in ("1", "LA", "La"):
        return np.asarray(img.convert("L")), "grey"
    rgb = np.asarray(img.convert("RGB"))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0], "equal-channels"
    return rgb.astype(np.float64) @ BT601_LUMA, "luminance"


def load_image2d(path: str | Path, spacing: Sequence[float] | None = None) -> Volume:
    """Read a PNG or JPEG file into a grey float32 ``(columns, rows, 1)`` :class:`~livercad.types.Volume`.

    Args:
        path: The image file.
        spacing: ``(sx, sy)`` pixel size in mm (between columns, between rows); ``None``: unknown (1 mm
            placeholder, ``header.spacing_known`` is ``False``).

    Returns:
        The volume: ``data[i, j, 0] = pixel[rows - 1 - j, i]`` (grey values as stored, colour as luminance),
        ``affine`` of :func:`planar_affine`, ``spacing`` ``(sx, sy, 1.0)``, ``header`` an
        :class:`Image2DRecord`, ``original_shape`` ``(columns, rows, 1)``.

    Raises:
        InputError: one line naming the file (see the module docstring).
        ValueError: ``spacing`` is not two positive numbers.
    """
    file = Path(path)
    given = check_spacing(spacing)
    img, fmt, rotated = _open(file)
    values, colour = _grey(img)
    rows, columns = int(values.shape[0]), int(values.shape[1])
    if rows == 0 or columns == 0:
        raise InputError(file, f"image has zero size ({rows}x{columns})")
    data = np.asfortranarray(values[::-1, :].T[:, :, None], dtype=np.float32)
    sx, sy = given if given is not None else (1.0, 1.0)
    record = Image2DRecord(file, fmt, img.mode, rows, columns, colour, rotated, spacing_known=given is not None,
                           spacing_source="given" if given is not None else "unknown")
    return Volume(data=data, affine=planar_affine(columns, rows, (sx, sy)), header=record,
                  spacing=(sx, sy, 1.0), path=file, original_shape=(columns, rows, 1))


def is_image2d_name(path: str | Path) -> bool:
    """True for ``.png``, ``.jpg`` and ``.jpeg`` file names (case-insensitive).

    Example:
        >>> is_image2d_name("a/US_01.JPG"), is_image2d_name("a.nii.gz")
        (True, False)
    """
    return Path(path).name.lower().endswith(IMAGE2D_SUFFIXES)


__all__ = ["FORMATS", "IMAGE2D_SUFFIXES", "Image2DRecord", "check_spacing", "is_image2d_name", "load_image2d",
           "planar_affine"]

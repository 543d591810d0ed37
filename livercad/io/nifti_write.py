"""NIfTI writing that never loses geometry: masks and volumes, atomically, with isal gzip.

:func:`save_mask` writes a uint8 mask on exactly the voxel grid of the image it was computed from
(shape as stored, affine, qform/sform codes and matrices, NIfTI version); :func:`save_volume` writes
an image from an array and an affine. Both are re-exported by :mod:`livercad.io.nifti` (the reading half).

Policies:
    * every write is atomic (temporary file in the target folder, then rename: :mod:`livercad.io.atomic`);
    * ``.nii.gz`` is compressed with python-isal (``isal.isal_zlib``, about twice as fast as the standard
      library) when installed, with a stdlib fallback, at level 1; the gzip stream has ``mtime=0`` so
      that the same data always gives the same bytes;
    * nibabel's ``to_bytes`` is bypassed (header block + voxels are streamed without extra copies).
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from livercad.errors import InputError
from livercad.io.atomic import atomic_write
from livercad.types import Volume

try:  # pragma: no cover - isal is a declared dependency; the stdlib is the fallback
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover
    _isal_zlib = None

_GZIP_WRITE_LEVEL = 1
MAX_AFFINE_CONDITION = 1e8
"""Largest condition number of an affine's 3x3 part that counts as invertible (reading and writing)."""


def _header_block(hdr: nib.Nifti1Header) -> bytes:
    """Header + extensions + zero padding up to the (minimal) voxel offset, as nibabel writes them."""
    hdr["vox_offset"] = 0  # nibabel's write_to then sets the minimal offset (header + extensions)
    buffer = io.BytesIO()
    hdr.write_to(buffer)
    head = buffer.getvalue()
    return head + bytes(int(hdr["vox_offset"]) - len(head))


def _fortran_flat(arr: np.ndarray) -> np.ndarray:
    """The voxels in file (Fortran) order as a flat array; a view when ``arr`` is already F-ordered.

    C-ordered 3-D arrays are transposed one (I, K) plane at a time: about 2x faster than
    ``np.asfortranarray`` on a 512x512x300 uint8 mask. Masks built with ``np.zeros_like(volume.data)``
    inherit the volume's Fortran order and need no copy at all.
    """
    if arr.flags.f_contiguous:
        return arr.ravel(order="F")
    if arr.ndim != 3:
        return np.asfortranarray(arr).ravel(order="F")
    out = np.empty(arr.shape[::-1], dtype=arr.dtype)
    for j in range(arr.shape[1]):
        out[:, j, :] = arr[:, j, :].T
    return out.ravel()


def _write_image(hdr: nib.Nifti1Header, arr: np.ndarray, path: Path) -> Path:
    """Write a single-file NIfTI without extra copies of the voxels; gzip with isal when ``.nii.gz``.

    nibabel's ``to_bytes`` is avoided: it spends most of a mask write in checks and copies.
    """
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise InputError(path, "output file name must end with .nii or .nii.gz")
    voxels = _fortran_flat(arr.astype(hdr.get_data_dtype(), copy=False))
    chunks: list[bytes | memoryview] = [_header_block(hdr), memoryview(voxels.view(np.uint8))]
    if name.endswith(".gz"):
        zlib_module = _isal_zlib if _isal_zlib is not None else zlib
        compressor = zlib_module.compressobj(_GZIP_WRITE_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
        chunks = [compressor.compress(chunk) for chunk in chunks] + [compressor.flush()]

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)

    return atomic_write(path, _write)


def _single_file_header(header: object) -> nib.Nifti1Header:
    """A private single-file header of ``header``'s NIfTI version (a fresh NIfTI-1 one for None)."""
    if isinstance(header, nib.Nifti2Header):
        klass: type[nib.Nifti1Header] = nib.Nifti2Header
    elif isinstance(header, nib.Nifti1Header):
        klass = nib.Nifti1Header
    else:
        return nib.Nifti1Header()
    hdr = klass(header.binaryblock, header.endianness, False, header.extensions)
    hdr["magic"] = hdr.single_magic
    return hdr


def _set_geometry(hdr: nib.Nifti1Header, affine: np.ndarray, columns: Sequence[int]) -> None:
    """Store ``affine`` in qform and sform unless the header's own affine already matches it.

    Existing non-zero codes are kept; zero codes become 1 (scanner). Only ``columns`` (and the
    translation) are compared: a single slice's third column may be repaired on load
    (see ``livercad.io.nifti._affine``).
    """
    cols = list(columns) + [3]
    coded = int(hdr["sform_code"]) or int(hdr["qform_code"])
    if coded and np.allclose(hdr.get_best_affine()[:, cols], affine[:, cols], rtol=0, atol=1e-6):
        return
    hdr.set_sform(affine, code=int(hdr["sform_code"]) or 1)
    hdr.set_qform(affine, code=int(hdr["qform_code"]) or 1)


def _as_mask_uint8(mask: np.ndarray, path: Path) -> np.ndarray:
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype == bool:
        return mask.view(np.uint8)  # bool is one byte holding 0 or 1: no copy needed
    if mask.size and (not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 255
                      or np.any(mask != np.round(mask))):
        raise InputError(path, f"mask values must be integers in 0..255, got {mask.dtype} "
                               f"in [{mask.min()}, {mask.max()}]")
    return mask.astype(np.uint8)


def save_mask(mask: np.ndarray, like: Volume, path: str | Path) -> Path:
    """Write a uint8 mask on exactly ``like``'s voxel grid (atomic; gzip when the name ends .nii.gz).

    The header of ``like`` is copied (same NIfTI version, qform/sform codes and matrices, pixdim,
    units, byte order); the data type becomes uint8 without scaling and the stored shape is
    ``like.original_shape`` (a 2-D image gets a 2-D mask).

    Args:
        mask: Boolean or integer (0..255) array of shape ``like.shape``.
        like: The volume the mask was computed on.
        path: Output ``.nii`` or ``.nii.gz`` file.

    Returns:
        The written path.

    Raises:
        InputError: the mask's shape differs from ``like.shape``, values out of 0..255, or a bad name.

    Example:
        >>> import tempfile, numpy as np
        >>> from livercad.io.nifti import load_volume
        >>> d = Path(tempfile.mkdtemp())
        >>> vol = load_volume(save_volume(np.zeros((4, 5, 3)), np.eye(4), d / "img.nii.gz"))
        >>> float(load_volume(save_mask(vol.data > -1, vol, d / "mask.nii.gz")).data.sum())
        60.0
    """
    out = Path(path)
    arr = np.asarray(mask)
    if arr.shape != tuple(like.shape):
        raise InputError(out, f"mask shape {arr.shape} differs from image shape {tuple(like.shape)} "
                              f"of {like.path}")
    stored = tuple(like.original_shape) or tuple(like.shape)
    if math.prod(stored) != arr.size:
        stored = tuple(like.shape)
    arr = _as_mask_uint8(arr, out).reshape(stored, order="F")
    hdr = _single_file_header(like.header)
    hdr.set_data_shape(stored)
    _set_geometry(hdr, np.asarray(like.affine, dtype=np.float64), range(2 if like.shape[2] == 1 else 3))
    hdr.set_data_dtype(np.uint8)
    hdr.set_slope_inter(1.0, 0.0)
    hdr["intent_code"], hdr["cal_min"] = 0, 0.0
    hdr["cal_max"] = float(arr.max()) if arr.size else 0.0
    return _write_image(hdr, arr, out)


def save_volume(data: np.ndarray, affine: np.ndarray, path: str | Path, *, header: object | None = None,
                dtype: type | np.dtype = np.float32) -> Path:
    """Write an image (atomic; isal gzip when the name ends ``.nii.gz``).

    Integer output types (e.g. ``np.int16`` for CT Hounsfield units) are rounded and clipped, and
    stored without scaling; float data must be finite.

    Args:
        data: 2-D or 3-D array.
        affine: 4x4 voxel->world matrix, stored in both qform and sform (code 1 unless ``header``
            has codes).
        path: Output ``.nii`` or ``.nii.gz`` file.
        header: Optional NIfTI-1/2 header to start from (its version is kept).
        dtype: Stored voxel type.

    Returns:
        The written path.

    Example:
        >>> import tempfile, numpy as np
        >>> from livercad.io.nifti import load_volume
        >>> p = Path(tempfile.mkdtemp()) / "ct.nii"
        >>> float(load_volume(save_volume(np.full((2, 2, 2), 40.4), np.eye(4), p, dtype=np.int16)).data.max())
        40.0
    """
    out, arr, dt = Path(path), np.asarray(data), np.dtype(dtype)
    aff = np.asarray(affine, dtype=np.float64)
    if arr.ndim not in (2, 3) or aff.shape != (4, 4) or not np.all(np.isfinite(aff)) \
            or np.linalg.cond(aff[:3, :3]) > MAX_AFFINE_CONDITION:
        raise InputError(out, f"expected 2-D or 3-D data and a finite, invertible 4x4 affine, got data "
                              f"{arr.shape}, affine {aff.tolist()}")
    if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
        raise InputError(out, f"data contains {arr.size - np.count_nonzero(np.isfinite(arr))} NaN/Inf values")
    if dt.kind in "iu" and arr.dtype != dt:
        info = np.iinfo(dt)
        arr = np.clip(np.rint(arr), info.min, info.max)
    arr = arr.astype(dt, copy=False)
    hdr = _single_file_header(header)
    if header is None:
        hdr.set_xyzt_units("mm", "sec")
    hdr.set_data_shape(arr.shape)
    hdr.set_data_dtype(dt)
    hdr.set_slope_inter(1.0, 0.0)
    _set_geometry(hdr, aff, range(2 if arr.ndim == 2 or arr.shape[2] == 1 else 3))
    return _write_image(hdr, arr, out)


__all__ = ["MAX_AFFINE_CONDITION", "save_mask", "save_volume"]

"""NIfTI reading that never loses geometry (writing lives in :mod:`livercad.io.nifti_write`).

:func:`load_volume` reads ``.nii``/``.nii.gz`` (NIfTI-1 and NIfTI-2) into a :class:`~livercad.types.Volume`
and turns *every* problem with the file into a one-line :class:`~livercad.errors.InputError`
naming the file; :func:`load_mask` reads a label image onto an image's grid. :func:`save_mask` and
:func:`save_volume` are re-exported from :mod:`livercad.io.nifti_write`, so
``from livercad.io.nifti import load_volume, save_mask`` keeps working.

Policies:
    * NaN/Inf voxels are **rejected** (``InputError: ... contains N NaN/Inf voxels``), never replaced.
    * 2-D files become ``(I, J, 1)``; trailing size-1 dimensions beyond the third are squeezed; any
      other 4-D (or higher) file is rejected, except by :func:`load_channels`, which reads a 4th axis of
      co-registered images (``data.channels_axis``) as one volume per channel.
    * gzip is read with python-isal (``isal.igzip``) when installed (about twice as fast as the
      standard library), with a stdlib fallback.
"""

from __future__ import annotations

import gzip
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from livercad.errors import InputError
from livercad.io.nifti_write import MAX_AFFINE_CONDITION, save_mask, save_volume
from livercad.types import Volume

try:  # pragma: no cover - isal is a declared dependency; the stdlib is the fallback
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover
    _igzip = None

logger = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_N1_SINGLE, _N1_PAIR = b"n+1\x00", b"ni1\x00"
_N2_SINGLE, _N2_PAIR = b"n+2\x00", b"ni2\x00"
_SIGNATURES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"PK\x03\x04": "a ZIP archive",
               b"\x89HDF": "an HDF5 file", b"%PDF": "a PDF document"}
_SLAB_VOXELS = 1 << 22


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress a whole gzip file (all members); any failure becomes an InputError."""
    try:
        return _igzip.decompress(raw) if _igzip is not None else gzip.decompress(raw)
    except MemoryError:
        raise
    except Exception as exc:  # EOFError, BadGzipFile, zlib/isal errors
        raise InputError(path, f"truncated or corrupt gzip data ({type(exc).__name__}: {exc})") from exc


def _read_file(path: Path) -> bytes:
    """Return the (decompressed) bytes of a NIfTI file, checking existence and size first."""
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a regular file (expected a .nii or .nii.gz file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not raw:
        raise InputError(path, "file is empty (0 bytes)")
    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(raw, path)
        if not raw:
            raise InputError(path, "gzip stream decompresses to 0 bytes")
    return raw


def _image_class(raw: bytes, path: Path) -> type[nib.Nifti1Image]:
    """Pick Nifti1Image/Nifti2Image from the header size field and magic string."""
    size_le, size_be = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")
    if 348 in (size_le, size_be) and len(raw) >= 348:
        magic, klass, pair = raw[344:348], nib.Nifti1Image, _N1_PAIR
        single = _N1_SINGLE
    elif 540 in (size_le, size_be) and len(raw) >= 540:
        magic, klass, pair, single = raw[4:8], nib.Nifti2Image, _N2_PAIR, _N2_SINGLE
    else:
        what = next((name for sig, name in _SIGNATURES.items() if raw.startswith(sig)), None)
        found = f"it looks like {what}" if what else f"header size field {size_le}, {len(raw)} bytes in all"
        raise InputError(path, f"not a NIfTI file (expected a 348- or 540-byte NIfTI header; {found})")
    if magic == pair:
        raise InputError(path, "header of a NIfTI .hdr/.img pair; convert it to a single .nii/.nii.gz file")
    if magic != single:
        raise InputError(path, f"not a NIfTI file (magic string {magic!r}, expected {single!r})")
    return klass


def _parse(raw: bytes, path: Path) -> nib.Nifti1Image:
    klass = _image_class(raw, path)
    try:
        return klass.from_bytes(raw)
    except MemoryError:
        raise
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, struct errors, ...
        raise InputError(path, f"invalid NIfTI header ({type(exc).__name__}: {exc})") from exc


def _as_3d(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    """Map a stored shape to the 3-D working shape, or raise for 1-D / true 4-D+ data."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 2:
        dims.append(1)
    if len(dims) != 3:
        hint = (" (set data.channels_axis, or --channels-axis, when its 4th axis holds co-registered images)"
                if len(dims) == 4 else "")
        raise InputError(path, f"expected a 2-D or 3-D image, got {len(shape)}-D shape {tuple(shape)}{hint}")
    return dims[0], dims[1], dims[2]


def _channel_layout(shape: tuple[int, ...], path: Path) -> tuple[tuple[int, int, int], int]:
    """``(3-D shape, number of channels)`` of a stored shape whose 4th axis holds channels."""
    dims = list(shape)
    while len(dims) > 4 and dims[-1] == 1:
        dims.pop()
    if len(dims) == 4:
        return (dims[0], dims[1], dims[2]), dims[3]
    return _as_3d(shape, path), 1


def _check_layout(img: nib.Nifti1Image, n_bytes: int, path: Path, *, channels: bool = False) -> tuple[int, int, int]:
    """Validate shape, voxel type and that the file holds all the voxels the header promises.

    ``channels``: a 4th axis of channels is accepted (the 3-D shape of one channel is returned).
    """
    proxy = img.dataobj
    shape, dtype, offset = tuple(int(d) for d in proxy.shape), np.dtype(proxy.dtype), int(proxy.offset)
    if any(d <= 0 for d in shape) or not shape:
        raise InputError(path, f"zero-sized or negative dimension in shape {shape}")
    shape3 = _channel_layout(shape, path)[0] if channels else _as_3d(shape, path)
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise InputError(path, f"unsupported voxel type {dtype} (expected integer or float voxels)")
    minimum = type(img.header).single_vox_offset
    if offset < minimum:
        raise InputError(path, f"voxel data offset {offset} lies inside the header (expected >= {minimum})")
    needed = math.prod(shape) * dtype.itemsize
    if offset + needed > n_bytes:
        raise InputError(path, f"truncated: header describes {shape} {dtype.name} voxels ({needed} bytes "
                               f"from offset {offset}) but the file holds {n_bytes} bytes")
    return shape3


def _spacing(raw: bytes, img: nib.Nifti1Image, ndim: int, path: Path) -> tuple[float, float, float]:
    """Voxel size; ``ndim`` is 2 for a single slice (2-D file or a third axis of size 1)."""
    # pixdim as stored: nibabel silently replaces zero/negative values when it loads
    klass = type(img.header)
    pixdim = [float(v) for v in klass(raw[: klass.sizeof_hdr], check=False)["pixdim"][1:4]]
    used = pixdim[: min(ndim, 3)]
    if not all(math.isfinite(v) and v > 0 for v in used):
        raise InputError(path, f"invalid voxel size pixdim[1:{len(used) + 1}] = {used} (expected > 0 mm)")
    if ndim == 2:
        third = pixdim[2]
        used.append(third if math.isfinite(third) and third > 0 else 1.0)
    return used[0], used[1], used[2]


def _affine(img: nib.Nifti1Image, ndim: int, spacing: Sequence[float], path: Path) -> np.ndarray:
    """The image affine, checked to be finite and invertible.

    A single-slice file may store a zero third column; it is replaced by the unit normal of the
    image plane times ``spacing[2]`` so that the affine is invertible.
    """
    affine = np.array(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(path, "affine (qform/sform) contains NaN/Inf values")
    if ndim == 2 and not np.any(affine[:3, 2]):
        normal = np.cross(affine[:3, 0], affine[:3, 1])
        norm = float(np.linalg.norm(normal))
        if norm > 0:
            affine[:3, 2] = normal / norm * spacing[2]
    if np.linalg.cond(affine[:3, :3]) > MAX_AFFINE_CONDITION:
        raise InputError(path, f"affine is not invertible: {affine[:3, :3].round(6).tolist()}")
    return affine


def _voxels(raw: bytes, img: nib.Nifti1Image, shape3: tuple[int, int, int], path: Path,
            channel: tuple[int, int] | None = None) -> np.ndarray:
    """Scaled float32 voxels read straight from ``raw`` (``channel``: ``(index, count)`` along a 4th axis).

    Reading from the buffer avoids nibabel's extra copy of the raw voxels; scaling is computed in
    float64 (one rounding to float32, as nibabel's ``get_fdata``) in slabs to bound memory.
    """
    proxy = img.dataobj
    stored = np.frombuffer(raw, dtype=proxy.dtype, count=math.prod(proxy.shape), offset=int(proxy.offset))
    if channel is None:
        stored = stored.reshape(shape3, order="F")
    else:
        stored = stored.reshape((*shape3, channel[1]), order="F")[..., channel[0]]
    slope, inter = np.float64(proxy.slope), np.float64(proxy.inter)
    scaled = slope != 1.0 or inter != 0.0
    with np.errstate(all="ignore"):  # overflow to Inf is reported below as an InputError
        if not scaled:
            data = np.array(stored, dtype=np.float32, order="F")
        else:
            data = np.empty(shape3, dtype=np.float32, order="F")
            step = max(1, _SLAB_VOXELS // max(1, shape3[0] * shape3[1]))
            for k in range(0, shape3[2], step):
                data[:, :, k : k + step] = stored[:, :, k : k + step] * slope + inter
    if stored.dtype.kind == "f" or scaled:
        n_bad = data.size - int(np.count_nonzero(np.isfinite(data)))
        if n_bad:
            raise InputError(path, f"contains {n_bad} NaN/Inf voxels (NaN/Inf are rejected; fix the file)")
    return data.view(np.float32)  # canonical dtype object (the file's may carry an explicit byte order)


def load_volume(path: str | Path) -> Volume:
    """Read a ``.nii``/``.nii.gz`` image (NIfTI-1 or NIfTI-2) into a 3-D float32 :class:`Volume`.

    ``scl_slope``/``scl_inter`` are applied; the affine is nibabel's choice (sform if coded, else
    qform); ``spacing`` comes from the header's pixdim (a single-slice image gets ``pixdim[3]``, or
    1.0 when that is not positive); the header is kept for writing results back. Data keep the
    file's voxel order (Fortran-ordered, so ``data[:, :, k]`` is contiguous). NaN/Inf voxels are
    rejected, never replaced.

    Args:
        path: The image file.

    Returns:
        The volume; ``data`` is 3-D, ``original_shape`` is the shape stored in the file.

    Raises:
        InputError: one line naming the file, for a missing, empty, truncated, corrupt or non-NIfTI
            file, true 4-D data, a zero-sized dimension, NaN/Inf voxels, a bad voxel size or affine.

    Example:
        >>> import tempfile, numpy as np
        >>> affine = np.diag([0.8, 0.8, 3.0, 1.0])
        >>> vol = load_volume(save_volume(np.zeros((4, 5, 3)), affine, Path(tempfile.mkdtemp()) / "a.nii.gz"))
        >>> vol.shape, vol.spacing[2], vol.data.dtype
        ((4, 5, 3), 3.0, dtype('float32'))
    """
    file = Path(path)
    raw = _read_file(file)
    img = _parse(raw, file)
    shape3 = _check_layout(img, len(raw), file)
    original = tuple(int(d) for d in img.header.get_data_shape())
    ndim = 2 if shape3[2] == 1 else 3  # a single slice needs no valid third voxel size
    spacing = _spacing(raw, img, ndim, file)
    affine = _affine(img, ndim, spacing, file)
    data = _voxels(raw, img, shape3, file)
    logger.debug("loaded %s: shape %s spacing %s", file, original, spacing)
    return Volume(data=data, affine=affine, header=img.header, spacing=spacing, path=file,
                  original_shape=original)


def load_channels(path: str | Path) -> list[Volume]:
    """Read a NIfTI whose 4th axis holds co-registered images: one 3-D :class:`Volume` per channel.

    Every channel has the file's affine, spacing and header; its ``original_shape`` is the 3-D one (what a mask
    of it is written with). A 2-D or 3-D file (or a 4th axis of size 1) gives one volume, as :func:`load_volume`.
    The checks of :func:`load_volume` apply to each channel.

    Raises:
        InputError: one line naming the file (see :func:`load_volume`); 5-D data.

    Example:
        >>> import tempfile, numpy as np
        >>> p = Path(tempfile.mkdtemp()) / "a.nii.gz"
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 5, 3, 2), np.float32), np.eye(4)), p)
        >>> [v.shape for v in load_channels(p)]
        [(4, 5, 3), (4, 5, 3)]
    """
    file = Path(path)
    raw = _read_file(file)
    img = _parse(raw, file)
    shape3 = _check_layout(img, len(raw), file, channels=True)
    n = _channel_layout(tuple(int(d) for d in img.dataobj.shape), file)[1]
    ndim = 2 if shape3[2] == 1 else 3
    spacing = _spacing(raw, img, ndim, file)
    affine = _affine(img, ndim, spacing, file)
    original = tuple(int(d) for d in img.header.get_data_shape())[:3] if n > 1 else (
        tuple(int(d) for d in img.header.get_data_shape()))
    return [Volume(data=_voxels(raw, img, shape3, file, (c, n) if n > 1 else None), affine=affine,
                   header=img.header, spacing=spacing, path=file, original_shape=original) for c in range(n)]



def load_mask(path: str | Path, like: Volume, *, liver_labels: Sequence[int] | None = None) -> np.ndarray:
    """Load a label image as a boolean liver mask on ``like``'s grid.

    Args:
        path: The label file.
        like: The image the mask belongs to.
        liver_labels: Label values that count as liver (e.g. ``(1, 2)`` for LiTS liver + tumour);
            ``None`` means every value > 0.

    Returns:
        A bool array of shape ``like.shape``.

    Raises:
        InputError: naming the mask file when it cannot be read or its shape or affine differs
            from the image's (affines compared with ``np.allclose(..., atol=1e-4)``).

    Example:
        >>> import tempfile, numpy as np
        >>> d = Path(tempfile.mkdtemp())
        >>> vol = load_volume(save_volume(np.zeros((3, 3, 2)), np.eye(4), d / "i.nii"))
        >>> labels = np.zeros((3, 3, 2)); labels[0, 0, 0] = 2; labels[1, 1, 1] = 1
        >>> int(load_mask(save_mask(labels, vol, d / "m.nii"), vol, liver_labels=[2]).sum())
        1
    """
    return select_labels(load_labels(path, like), liver_labels)


def load_labels(path: str | Path, like: Volume) -> np.ndarray:
    """The label values of a label image that lies on ``like``'s grid (float32, ``like.shape``).

    Raises:
        InputError: naming the file when it cannot be read or its shape or affine differs from the image's
            (affines compared with ``np.allclose(..., atol=1e-4)``).
    """
    labels = load_volume(path)
    if labels.shape != like.shape:
        raise InputError(path, f"mask shape {labels.shape} differs from image shape {like.shape} "
                               f"of {like.path}")
    if not np.allclose(labels.affine, like.affine, atol=1e-4):
        diff = float(np.max(np.abs(labels.affine - like.affine)))
        raise InputError(path, f"mask affine differs from the affine of image {like.path} "
                               f"(max difference {diff:.3g}); resample the mask onto the image grid")
    return labels.data


def select_labels(labels: np.ndarray, values: Sequence[int] | None) -> np.ndarray:
    """A bool mask of the voxels whose label is one of ``values`` (``None``: every value > 0)."""
    if values is None:
        return labels > 0
    return np.isin(labels, np.asarray(list(values), dtype=np.float32))


__all__ = ["load_channels", "load_volume", "save_mask", "save_volume", "load_mask"]

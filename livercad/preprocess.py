"""Preprocessing with MONAI transforms, and its exact inverse back to the input grid.

Forward: the volume is reoriented to the closest canonical frame (RAS, MONAI ``Orientation``: pure
axis flips/permutations, no resampling, so it is exactly invertible), intensities are normalised per
modality (CT: HU window, MONAI ``ScaleIntensityRange``'s arithmetic done in place; MR/US:
``ScaleIntensityRangePercentiles`` then ``NormalizeIntensity``), and every axial slice is resized
in-plane to the model size with ``Resize`` (slices are the channel axis; CT goes in chunks of
:data:`CHUNK` slices, windowed and resized per chunk, so a large volume is never copied whole in float32).

Inverse: :meth:`Prepared.to_original` resizes slice maps back to the canonical in-plane size and
undoes the orientation, giving arrays with exactly the input voxel grid.

Example:
    >>> import numpy as np, nibabel as nib
    >>> from livercad.types import Volume
    >>> v = Volume(np.zeros((40, 30, 5), np.float32), np.diag([-1., -1, 3, 1]), None, (1., 1, 3))
    >>> p = prepare(v, modality="ct", image_size=64)
    >>> tuple(p.image.shape), p.to_original(np.ones((5, 64, 64), np.float32)).shape
    ((5, 64, 64), (40, 30, 5))
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
from monai.transforms import NormalizeIntensity, Resize, ScaleIntensityRangePercentiles

from livercad.errors import InputError
from livercad.types import Volume

_RAS = (("L", "R"), ("P", "A"), ("I", "S"))
#: CT slices windowed and resized per call in :func:`prepare` (bounds its temporary memory).
CHUNK = 16


@dataclass(frozen=True)
class Prepared:
    """A volume ready for the 2-D models.

    Attributes:
        image: float32 tensor ``(Z, S, S)``: normalised canonical axial slices at model size.
        canonical_shape: ``(X, Y, Z)`` of the reoriented volume before resizing.
        ornt: nibabel orientation array mapping the file's axes to canonical.
        spacing: voxel size (mm) of the canonical axes.
    """

    image: torch.Tensor
    canonical_shape: tuple[int, int, int]
    ornt: np.ndarray
    spacing: tuple[float, float, float]

    def to_canonical(self, maps: np.ndarray | torch.Tensor, *, mode: str = "bilinear") -> np.ndarray:
        """Resize ``(Z, S, S)`` slice maps back to the canonical ``(X, Y, Z)`` grid (in chunks of slices)."""
        t = torch.as_tensor(maps, dtype=torch.float32)
        x, y, _ = self.canonical_shape
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        resize = Resize((x, y), mode=mode, **kwargs)
        out = np.empty((x, y, t.shape[0]), np.float32)
        for z0 in range(0, t.shape[0], CHUNK):
            out[:, :, z0:z0 + CHUNK] = torch.as_tensor(resize(t[z0:z0 + CHUNK])).permute(1, 2, 0).numpy()
        return out

    def to_canonical_box(self, maps: torch.Tensor, hit: torch.Tensor) -> tuple[np.ndarray, slice, slice]:
        """The part of :meth:`to_canonical` (bilinear) of ``(n, S, S)`` maps that the model pixels ``hit`` reach.

        When the canonical size is the model size times a power of two (512 -> 128 or 256) only the
        in-plane box around ``hit`` (``(S, S)`` bool) is resized (:func:`_up_window`; bit-identical to the
        same box of the whole resize, tested); other sizes resize the whole axis. Canonical pixels outside
        the box are interpolated from model pixels outside ``hit`` only.

        Returns:
            ``(values, rows, cols)``: float32 ``(len(rows), len(cols), n)`` (a view) and the canonical slices.
        """
        x, y, _ = self.canonical_shape
        src_r, n_r, keep_r, dst_r = _up_window(hit.any(1).numpy(), maps.shape[1], x)
        src_c, n_c, keep_c, dst_c = _up_window(hit.any(0).numpy(), maps.shape[2], y)
        part = Resize((n_r, n_c), mode="bilinear", align_corners=False)(
            torch.as_tensor(maps, dtype=torch.float32)[:, src_r, src_c].contiguous())
        part = torch.as_tensor(part).as_subclass(torch.Tensor)[:, keep_r, keep_c]
        return part.permute(1, 2, 0).numpy(), dst_r, dst_c

    def to_original(self, maps: np.ndarray | torch.Tensor, *, mode: str = "bilinear") -> np.ndarray:
        """Map ``(Z, S, S)`` slice maps onto the original file's voxel grid (exact inverse)."""
        return self.canonical_to_original(self.to_canonical(maps, mode=mode))

    def canonical_to_original(self, canon: np.ndarray) -> np.ndarray:
        """Undo the reorientation of a canonical ``(X, Y, Z)`` array (pure flips/permutation, exact)."""
        inverse = nib.orientations.ornt_transform(_canonical_ornt(), self.ornt)
        return np.ascontiguousarray(nib.orientations.apply_orientation(canon, inverse))

    def from_original(self, arr: np.ndarray, *, mode: str = "nearest") -> torch.Tensor:
        """Bring an array on the original grid (e.g. a ground-truth mask) to ``(Z, S, S)`` model space.

        Works in chunks of slices (cast to float32 per chunk), so a large uint8 mask is never copied whole;
        all-zero chunks (a mask's slices without liver) stay zero without being resized, and where the
        canonical size is a multiple of the model size only the in-plane box around the non-zero voxels is
        resized (:func:`_block_window`; the same values as the whole resize, tested).
        """
        canon = nib.orientations.apply_orientation(np.asarray(arr), self.ornt)  # flips/transposes: a view
        s = self.image.shape[-1]
        out = torch.zeros((canon.shape[2], s, s), dtype=torch.float32)
        for z0 in range(0, canon.shape[2], CHUNK):
            raw = canon[:, :, z0:z0 + CHUNK]
            cols = raw.any(axis=0)  # (Y, slices); reductions over the outer axis first: the fast order here
            if not cols.any():
                continue
            src_c, dst_c = _block_window(cols.any(axis=1), s)
            src_r, dst_r = _block_window(raw[:, src_c].any(axis=(1, 2)), s)
            part = np.ascontiguousarray(raw[src_r, src_c].astype(np.float32))
            resize = Resize((dst_r.stop - dst_r.start, dst_c.stop - dst_c.start), mode=mode)
            out[z0:z0 + CHUNK, dst_r, dst_c] = torch.as_tensor(resize(torch.from_numpy(part).permute(2, 0, 1))).float()
        return out


def _pow2_factor(src: int, dst: int) -> int | None:
    """``dst // src`` when ``dst`` is ``src`` times a power of two (1, 2, 4, ...), else ``None``."""
    if src <= 0 or dst % src:
        return None
    k = dst // src
    return k if k & (k - 1) == 0 else None


def _up_window(hit: np.ndarray, src: int, dst: int) -> tuple[slice, int, slice, slice]:
    """One axis of :meth:`Prepared.to_canonical_box`: source rows, their resized length, rows kept, their place.

    With a power-of-two upsampling factor ``k`` torch's bilinear source coordinates ``(o + 0.5) / k - 0.5``
    are exact binary fractions, so resizing a crop gives bit for bit the rows of the full resize, except
    the ``k`` result rows next to a cut (clamped differently); the crop keeps two source rows of margin
    around the rows ``hit``, and those border rows are dropped. Other factors: the whole axis.
    """
    k = _pow2_factor(src, dst)
    idx = np.flatnonzero(hit)
    if k is None or idx.size == 0:
        return slice(0, src), dst, slice(0, dst), slice(0, dst)
    p0, p1 = max(int(idx[0]) - 2, 0), min(int(idx[-1]) + 3, src)
    keep0 = 0 if p0 == 0 else k
    keep1 = (p1 - p0) * k if p1 == src else (p1 - p0 - 1) * k
    return slice(p0, p1), (p1 - p0) * k, slice(keep0, keep1), slice(p0 * k + keep0, p0 * k + keep1)


def _block_window(hit: np.ndarray, dst: int) -> tuple[slice, slice]:
    """One axis of :meth:`Prepared.from_original`: (source rows to resize, model rows they become).

    When the source length is an integer multiple ``k`` of ``dst``, model row ``o`` of a bilinear or
    nearest downsampling reads only source rows ``[o k, o k + k)`` (source coordinates ``(o + 0.5) k - 0.5``
    and ``o k`` are exact), so the rows of whole blocks around the non-zero rows ``hit`` resize to exactly
    the model rows of the full resize, and every other model row is 0. Other lengths: the whole axis.
    """
    src = hit.shape[0]
    idx = np.flatnonzero(hit)
    if src % dst or idx.size == 0:
        return slice(0, src), slice(0, dst)
    k = src // dst
    o0, o1 = int(idx[0]) // k, int(idx[-1]) // k + 1
    return slice(o0 * k, o1 * k), slice(o0, o1)


def _canonical_ornt() -> np.ndarray:
    return nib.orientations.axcodes2ornt("RAS")


def _strided(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when torch can wrap it without a copy (native byte order, C or Fortran order), else a copy."""
    if arr.dtype.isnative and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        return arr
    return np.ascontiguousarray(arr)


def orientation_of(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation mapping voxel axes to the closest canonical (RAS) axes."""
    return nib.orientations.io_orientation(affine)


def reorient(volume: Volume) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Reorient a volume to the closest canonical frame with MONAI ``Orientation``.

    Returns:
        (canonical array ``(X, Y, Z)``, orientation array, canonical spacing).
    """
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    data = torch.from_numpy(_strided(volume.data))[None]  # no copy of a loaded (Fortran-ordered) volume
    mt = MetaTensor(data, affine=torch.as_tensor(volume.affine))
    out = Orientation(axcodes="RAS", labels=_RAS)(mt)
    ornt = orientation_of(volume.affine)
    spacing = tuple(float(volume.spacing[int(a)]) for a in np.argsort(ornt[:, 0]))
    return out.as_tensor()[0].numpy(), ornt, spacing  # type: ignore[return-value]


def normalize(arr: torch.Tensor, modality: str, *, ct_window: tuple[float, float] = (-160.0, 240.0),
              percentiles: tuple[float, float] = (0.5, 99.5)) -> torch.Tensor:
    """Normalise intensities per modality with MONAI transforms.

    CT: the HU window maps to [0, 1] then to roughly zero mean (``x * 2 - 1``), clipped: MONAI
    ``ScaleIntensityRange``'s arithmetic, step for step, in place on one float32 copy (bit-identical to
    it on float32 input, tested) without MONAI's intermediate tensors.
    MR/US: percentile clip to [0, 1] followed by a z-score over the volume.
    """
    if modality == "ct":
        lo, hi = ct_window
        out = torch.as_tensor(arr).as_subclass(torch.Tensor).to(torch.float32, copy=True)
        return out.sub_(lo).div_(hi - lo).mul_(2.0).add_(-1.0).clamp_(-1.0, 1.0)
    if modality in ("mr-t2", "us"):
        lo, hi = percentiles
        out = ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True)(arr)
        out = NormalizeIntensity()(out)
    else:
        raise InputError(None, f"unknown modality '{modality}'; expected one of ct, mr-t2, us")
    return torch.as_tensor(out).float()


def prepare(volume: Volume, *, modality: str = "ct", image_size: int = 256,
            ct_window: tuple[float, float] = (-160.0, 240.0),
            percentiles: tuple[float, float] = (0.5, 99.5)) -> Prepared:
    """Reorient, normalise and resize a volume to ``(Z, S, S)`` model slices.

    Args:
        volume: the loaded image.
        modality: ``ct`` | ``mr-t2`` | ``us``.
        image_size: the in-plane model size S.
        ct_window: HU window for CT.
        percentiles: clip percentiles for MR/US.
    """
    canon, ornt, spacing = reorient(volume)
    resize = Resize((image_size, image_size), mode="bilinear", align_corners=False)
    # CT windowing is per voxel and the slices are independent channels of Resize, so chunks of slices give
    # the same result as one call without full-resolution float copies; MR/US normalisation uses
    # whole-volume statistics (one chunk)
    # (the canonical view is copied chunk by chunk into C order, the layout every chunk had before)
    n = canon.shape[2]
    step = CHUNK if modality == "ct" else max(n, 1)
    out = torch.empty((n, image_size, image_size), dtype=torch.float32)
    for z0 in range(0, n, step):
        t = torch.from_numpy(np.ascontiguousarray(canon[:, :, z0:z0 + step])).permute(2, 0, 1)  # (z, X, Y)
        part = normalize(t, modality, ct_window=ct_window, percentiles=percentiles)
        out[z0:z0 + step] = torch.as_tensor(resize(part)).as_subclass(torch.Tensor).float()
    return Prepared(image=out, canonical_shape=tuple(canon.shape), ornt=ornt, spacing=spacing)


def context_stack(slices: torch.Tensor, index: torch.Tensor | list[int], context: int) -> torch.Tensor:
    """2.5-D input: for each slice index the slice and ``context`` neighbours each side as channels.

    Edge slices repeat the border slice. ``slices`` is ``(Z, S, S)``; returns ``(N, 2*context+1, S, S)``.

    Example:
        >>> context_stack(torch.arange(3.).view(3, 1, 1), [0, 2], 1)[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [1.0, 2.0, 2.0]]
    """
    idx = torch.as_tensor(index, dtype=torch.long)
    offsets = torch.arange(-context, context + 1)
    nb = (idx[:, None] + offsets[None, :]).clamp(0, slices.shape[0] - 1)
    return slices[nb]

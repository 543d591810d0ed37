"""Preprocessing with MONAI transforms, and its exact inverse back to the input grid.

Forward: the volume is reoriented to the closest canonical frame (RAS, MONAI ``Orientation``: pure
axis flips/permutations, no resampling, so it is exactly invertible), intensities are normalised per
modality family (:func:`livercad.modality.family`; CT: HU window, MONAI ``ScaleIntensityRange``'s
arithmetic done in place; MR/US: ``ScaleIntensityRangePercentiles`` then ``NormalizeIntensity``, statistics
of the real voxels only), every canonical axial slice ``(X, Y)`` is padded, centred, to the square
``(M, M)``, ``M = max(X, Y)`` (:mod:`livercad.preprocess.geometry`; the normalised value -1 for CT, the
normalised minimum for MR/US; square slices are not padded) and resized in-plane to the model size
``(S, S)`` with ``Resize``, so the aspect ratio is kept (slices are the channel axis; CT goes in chunks of
:data:`CHUNK` slices, windowed and resized per chunk, so a large volume is never copied whole in float32).

Inverse: :meth:`Prepared.to_canonical` resizes slice maps back to ``(M, M)`` and crops the padding off,
:meth:`Prepared.to_original` also undoes the orientation, giving arrays with exactly the input voxel grid;
:meth:`Prepared.from_original` pads (zeros) and resizes an array of the input grid to model space.

Example:
    >>> import numpy as np, nibabel as nib
    >>> from livercad.types import Volume
    >>> v = Volume(np.zeros((40, 30, 5), np.float32), np.diag([-1., -1, 3, 1]), None, (1., 1, 3))
    >>> p = prepare(v, modality="ct", image_size=64)
    >>> tuple(p.image.shape), p.to_original(np.ones((5, 64, 64), np.float32)).shape
    ((5, 64, 64), (40, 30, 5))
    >>> p.canonical_shape, p.padded_size, p.pad
    ((40, 30, 5), 40, (0, 5))
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import nibabel as nib
import numpy as np
import torch
from monai.transforms import NormalizeIntensity, Resize, ScaleIntensityRangePercentiles

from livercad.config import CT_WINDOW, PERCENTILES
from livercad.modality import family
from livercad.preprocess.geometry import (
    block_window,
    pad_square,
    padded_box,
    real_part,
    square_pad,
    unpad_window,
    up_window,
)
from livercad.types import Volume

_RAS = (("L", "R"), ("P", "A"), ("I", "S"))
#: CT slices windowed and resized per call in :func:`prepare` (bounds its temporary memory).
CHUNK = 16


@dataclass(frozen=True)
class Prepared:
    """A volume ready for the 2-D models.

    Attributes:
        image: float32 tensor ``(Z, S, S)``: normalised canonical axial slices, padded square, at model size;
            ``(Z, n, S, S)`` for a volume with ``n - 1`` :attr:`~livercad.types.Volume.channels`.
        canonical_shape: ``(X, Y, Z)`` of the reoriented volume (before padding and resizing).
        ornt: nibabel orientation array mapping the file's axes to canonical.
        spacing: voxel size (mm) of the canonical axes.
    """

    image: torch.Tensor
    canonical_shape: tuple[int, int, int]
    ornt: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def padded_size(self) -> int:
        """``M = max(X, Y)``: the side of the square each canonical slice is padded to before resizing."""
        return square_pad(*self.canonical_shape[:2])[0]

    @property
    def pad(self) -> tuple[int, int]:
        """``(row, col)`` offset of the canonical slice in the padded square (``(0, 0)`` for square slices)."""
        return square_pad(*self.canonical_shape[:2])[1]

    def to_canonical(self, maps: np.ndarray | torch.Tensor, *, mode: str = "bilinear") -> np.ndarray:
        """Resize ``(Z, S, S)`` slice maps to ``(M, M)`` and crop to the canonical ``(X, Y, Z)`` grid (in chunks).

        The result is slice-major (Fortran order, as a NIfTI file's voxels): each chunk is resized transposed,
        ``(z, S, S)`` as ``(z, Y, X)``, and written into its slices without strided copies. Bilinear resizing
        is separable, so this equals the untransposed resize up to float rounding (the order of the two 1-D
        interpolations); :meth:`to_canonical_box` uses the same frame, so the two are bit-identical.
        """
        t = torch.as_tensor(maps, dtype=torch.float32)
        x, y, _ = self.canonical_shape
        (pr, pc), m = self.pad, self.padded_size
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        resize = Resize((m, m), mode=mode, **kwargs)
        out = np.empty((x, y, t.shape[0]), np.float32, order="F")
        frame = out.transpose(2, 1, 0)  # (Z, Y, X) C-ordered view of the slice-major result
        for z0 in range(0, t.shape[0], CHUNK):
            part = torch.as_tensor(resize(t[z0:z0 + CHUNK].transpose(1, 2).contiguous())).as_subclass(torch.Tensor)
            frame[z0:z0 + CHUNK] = part[:, pc:pc + y, pr:pr + x].numpy()
        return out

    def to_canonical_box(self, maps: torch.Tensor, hit: torch.Tensor) -> tuple[np.ndarray, slice, slice]:
        """The part of :meth:`to_canonical` (bilinear) of ``(n, S, S)`` maps that the model pixels ``hit`` reach.

        When the model size is the padded size ``M`` times a dyadic fraction (512 -> 128, 192 or 256:
        :func:`~livercad.preprocess.geometry.dyadic_blocks`) only the in-plane box around ``hit`` (``(S, S)``
        bool) is resized (:func:`~livercad.preprocess.geometry.up_window`; bit-identical to the same box of the
        whole resize, tested); other sizes resize the whole axis. The box is then cropped to the real (unpadded)
        canonical pixels. Canonical pixels outside the box are interpolated from model pixels outside ``hit``
        only. Resized in the transposed frame of :meth:`to_canonical`.

        Returns:
            ``(values, rows, cols)``: float32 ``(len(rows), len(cols), n)`` (a view, slice-major) and the
            canonical slices (unpadded canonical coordinates, possibly empty).
        """
        x, y, _ = self.canonical_shape
        (pr, pc), m = self.pad, self.padded_size
        src_r, n_r, keep_r, dst_r = up_window(hit.any(1).numpy(), maps.shape[1], m)
        src_c, n_c, keep_c, dst_c = up_window(hit.any(0).numpy(), maps.shape[2], m)
        keep_r, rows = unpad_window(keep_r, dst_r, pr, x)
        keep_c, cols = unpad_window(keep_c, dst_c, pc, y)
        frame = torch.as_tensor(maps, dtype=torch.float32).transpose(1, 2)[:, src_c, src_r].contiguous()
        part = torch.as_tensor(Resize((n_c, n_r), mode="bilinear", align_corners=False)(frame))
        part = part.as_subclass(torch.Tensor)[:, keep_c, keep_r]
        return part.permute(2, 1, 0).numpy(), rows, cols

    def to_original(self, maps: np.ndarray | torch.Tensor, *, mode: str = "bilinear") -> np.ndarray:
        """Map ``(Z, S, S)`` slice maps onto the original file's voxel grid (exact inverse)."""
        return self.canonical_to_original(self.to_canonical(maps, mode=mode))

    def canonical_to_original(self, canon: np.ndarray) -> np.ndarray:
        """Undo the reorientation of a canonical ``(X, Y, Z)`` array (pure flips/permutation, exact).

        The result is in Fortran order, the voxel order of a NIfTI file (no copy when the canonical array is
        slice-major and the file is RAS), so writing it needs no transposition.
        """
        inverse = nib.orientations.ornt_transform(_canonical_ornt(), self.ornt)
        return np.asfortranarray(nib.orientations.apply_orientation(canon, inverse))

    def from_original(self, arr: np.ndarray, *, mode: str = "nearest") -> torch.Tensor:
        """Bring an array on the original grid (e.g. a ground-truth mask) to ``(Z, S, S)`` model space.

        The canonical slices are padded with zeros to the ``(M, M)`` square and resized. Works in chunks of
        slices (cast to float32 per chunk), so a large uint8 mask is never copied whole; all-zero chunks (a
        mask's slices without liver) stay zero without being resized, and where ``M`` is a multiple of the
        model size only the in-plane box around the non-zero voxels is resized
        (:func:`~livercad.preprocess.geometry.block_window`; the same values as the whole resize, tested).
        """
        canon = nib.orientations.apply_orientation(np.asarray(arr), self.ornt)  # flips/transposes: a view
        flip = slice_major(canon)
        s, m, (pr, pc) = self.image.shape[-1], self.padded_size, self.pad
        out = torch.zeros((canon.shape[2], s, s), dtype=torch.float32)
        for z0 in range(0, canon.shape[2], CHUNK):
            raw = canon[:, :, z0:z0 + CHUNK]
            cols = raw.any(axis=0)  # (Y, slices); reductions over the outer axis first: the fast order here
            if not cols.any():
                continue
            src_c, dst_c = block_window(cols.any(axis=1), pc, m, s)
            src_r, dst_r = block_window(raw[:, real_part(src_c, pc, raw.shape[1])].any(axis=(1, 2)), pr, m, s)
            size = (dst_r.stop - dst_r.start, dst_c.stop - dst_c.start)
            if flip:  # the box copied slice-major and resized as (z, Y, X), like the model slices
                part = torch.from_numpy(padded_box(raw, src_r, src_c, (pr, pc), order="F")).permute(2, 1, 0)
                resized = torch.as_tensor(Resize(size[::-1], mode=mode)(part)).transpose(1, 2)
            else:
                part = torch.from_numpy(padded_box(raw, src_r, src_c, (pr, pc))).permute(2, 0, 1)
                resized = torch.as_tensor(Resize(size, mode=mode)(part))
            out[z0:z0 + CHUNK, dst_r, dst_c] = resized.float()
        return out


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


def normalize(arr: torch.Tensor, modality: str, *, ct_window: tuple[float, float] = CT_WINDOW,
              percentiles: tuple[float, float] = PERCENTILES) -> torch.Tensor:
    """Normalise intensities per modality family (:func:`livercad.modality.family`) with MONAI transforms.

    CT: the HU window maps to [0, 1] then to roughly zero mean (``x * 2 - 1``), clipped: MONAI
    ``ScaleIntensityRange``'s arithmetic, step for step, in place on one float32 copy (bit-identical to
    it on float32 input, tested) without MONAI's intermediate tensors.
    MR (``mr``, ``mr-t1``, ``mr-t2``, ...) and US: percentile clip to [0, 1] followed by a z-score over ``arr``.

    Raises:
        InputError: a modality name :func:`livercad.modality.family` does not know.
    """
    if family(modality) == "ct":
        lo, hi = ct_window
        out = torch.as_tensor(arr).as_subclass(torch.Tensor).to(torch.float32, copy=True)
        return out.sub_(lo).div_(hi - lo).mul_(2.0).add_(-1.0).clamp_(-1.0, 1.0)
    lo, hi = percentiles
    out = ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True)(arr)
    out = NormalizeIntensity()(out)
    return torch.as_tensor(out).float()


def prepare(volume: Volume, *, modality: str = "ct", image_size: int = 256,
            ct_window: tuple[float, float] = CT_WINDOW, percentiles: tuple[float, float] = PERCENTILES) -> Prepared:
    """Reorient, normalise, pad square and resize a volume to ``(Z, S, S)`` model slices.

    Args:
        volume: the loaded image; with :attr:`~livercad.types.Volume.channels` the result is ``(Z, n, S, S)``,
            every image reoriented alike and normalised with its own statistics.
        modality: a name :func:`livercad.modality.family` knows (``ct`` | ``mr`` | ``mr-t2`` | ``us`` ...).
        image_size: the in-plane model size S.
        ct_window: HU window for CT (:data:`livercad.config.CT_WINDOW`).
        percentiles: clip percentiles for MR/US (:data:`livercad.config.PERCENTILES`).
    """
    fam = family(modality)
    canon, ornt, spacing = reorient(volume)
    out = _model_slices(canon, fam, image_size, ct_window, percentiles)
    if volume.channels:  # further co-registered images: the same reorientation, each normalised on its own
        others = [_model_slices(reorient(replace(volume, data=c, channels=()))[0], fam, image_size, ct_window,
                                percentiles) for c in volume.channels]
        out = torch.stack([out, *others], dim=1)
    return Prepared(image=out, canonical_shape=tuple(canon.shape), ornt=ornt, spacing=spacing)


def _model_slices(canon: np.ndarray, fam: str, image_size: int, ct_window: tuple[float, float],
                  percentiles: tuple[float, float]) -> torch.Tensor:
    """Normalised, square-padded ``(Z, S, S)`` model slices of one canonical ``(X, Y, Z)`` image."""
    x, y, n = canon.shape
    m, pad = square_pad(x, y)
    resize = Resize((image_size, image_size), mode="bilinear", align_corners=False)
    # CT windowing is per voxel and the slices are independent channels of Resize, so chunks of slices give
    # the same result as one call without full-resolution float copies; MR/US normalisation uses
    # whole-volume statistics of the real voxels (one chunk, normalised before padding)
    step = CHUNK if fam == "ct" else max(n, 1)
    out = torch.empty((n, image_size, image_size), dtype=torch.float32)
    flip = slice_major(canon)
    for z0 in range(0, n, step):
        part = normalize(_chunk(canon[:, :, z0:z0 + step], flip), fam, ct_window=ct_window, percentiles=percentiles)
        if (x, y) != (m, m):
            part = pad_square(part, m, pad[::-1] if flip else pad, -1.0 if fam == "ct" else float(part.min()))
        part = torch.as_tensor(resize(part)).as_subclass(torch.Tensor).float()
        out[z0:z0 + step] = part.transpose(1, 2) if flip else part
    return out


def slice_major(canon: np.ndarray) -> bool:
    """Whether each axial slice of a canonical ``(X, Y, Z)`` array is one block with ``X`` fastest.

    That is the layout of a NIfTI file's data (Fortran order) and of its reorientation by flips: the slices are
    then read as ``(z, Y, X)`` C-ordered views without a copy, and resized transposed (:func:`prepare`). Any
    other layout is copied into ``(z, X, Y)`` C order chunk by chunk.
    """
    sx, sy, sz = (abs(v) for v in canon.strides)  # flipped axes (negative strides) keep the layout
    return 0 < sx < sy <= sz or (canon.shape[2] == 1 and 0 < sx < sy)


def _chunk(part: np.ndarray, flip: bool) -> torch.Tensor:
    """``(z, Y, X)`` view of slice-major slices (``flip``), else a ``(z, X, Y)`` C-ordered copy."""
    if flip:
        if min(part.strides) < 0:  # a flipped view: torch takes positive strides only
            part = np.asfortranarray(part)
        return torch.from_numpy(part).permute(2, 1, 0)
    return torch.from_numpy(np.ascontiguousarray(part.transpose(2, 0, 1)))


def context_stack(slices: torch.Tensor, index: torch.Tensor | list[int], context: int) -> torch.Tensor:
    """2.5-D input: for each slice index the slice and ``context`` neighbours each side as channels.

    Edge slices repeat the border slice. ``slices`` is ``(Z, S, S)``; returns ``(N, 2*context+1, S, S)``.
    A case of ``n`` co-registered images, ``(Z, n, S, S)``, gives ``(N, n*(2*context+1), S, S)``: the stack of
    the first image, then that of the second, and so on.

    Example:
        >>> context_stack(torch.arange(3.).view(3, 1, 1), [0, 2], 1)[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0], [1.0, 2.0, 2.0]]
        >>> two = torch.stack([torch.arange(3.), 10 + torch.arange(3.)], 1).view(3, 2, 1, 1)
        >>> context_stack(two, [0], 1)[:, :, 0, 0].tolist()
        [[0.0, 0.0, 1.0, 10.0, 10.0, 11.0]]
    """
    idx = torch.as_tensor(index, dtype=torch.long)
    offsets = torch.arange(-context, context + 1)
    nb = (idx[:, None] + offsets[None, :]).clamp(0, slices.shape[0] - 1)
    if slices.ndim == 4:  # (N, 2c+1, n, S, S) -> per image its slice stack
        return slices[nb].transpose(1, 2).flatten(1, 2)
    return slices[nb]

"""In-plane geometry of :mod:`livercad.preprocess.prepare`: the centred square padding and the exact crop windows.

A canonical slice ``(X, Y)`` is padded to the square ``(M, M)``, ``M = max(X, Y)``, with the real voxels at
the row/column offsets :func:`square_pad` gives, and the square is resized to the model size ``(S, S)``
(so the aspect ratio is kept). The windows below let the inverse and the forward resize of a mask work on
the box around the pixels that matter only, with the same values as the whole resize (tested).

Example:
    >>> square_pad(122, 101)
    (122, (0, 10))
    >>> unpad_window(slice(0, 8), slice(6, 14), 10, 3)  # rows 4..6 of the 8 kept are canonical rows 0..2
    (slice(4, 7, None), slice(0, 3, None))
"""

from __future__ import annotations

import numpy as np
import torch

#: torch's CPU bilinear resize of a (non channels-last) float tensor takes another kernel, with another order of
#: the same arithmetic (1-ulp differences), when the output's ``H + W`` is at most this (ATen ``UpSampleKernel``,
#: ``_use_vectorized_kernel_cond_2d``); :func:`up_window` keeps a crop on the side of the full resize.
TORCH_SMALL_OUTPUT = 128


def square_pad(x: int, y: int) -> tuple[int, tuple[int, int]]:
    """``(M, (row offset, col offset))`` of a canonical ``(x, y)`` slice centred in the ``M = max(x, y)`` square."""
    m = max(x, y)
    return m, ((m - x) // 2, (m - y) // 2)


def pad_square(part: torch.Tensor, m: int, pad: tuple[int, int], value: float) -> torch.Tensor:
    """``(z, X, Y)`` slices placed at ``pad`` in a float32 ``(z, m, m)`` canvas filled with ``value``."""
    part = torch.as_tensor(part).as_subclass(torch.Tensor)
    out = torch.full((part.shape[0], m, m), float(value), dtype=torch.float32)
    out[:, pad[0]:pad[0] + part.shape[1], pad[1]:pad[1] + part.shape[2]] = part
    return out


def pow2_factor(src: int, dst: int) -> int | None:
    """``dst // src`` when ``dst`` is ``src`` times a power of two (1, 2, 4, ...), else ``None``."""
    if src <= 0 or dst % src:
        return None
    k = dst // src
    return k if k & (k - 1) == 0 else None


def up_window(hit: np.ndarray, src: int, dst: int) -> tuple[slice, int, slice, slice]:
    """One axis of ``Prepared.to_canonical_box``: source rows, their resized length, rows kept, their place.

    With a power-of-two upsampling factor ``k`` torch's bilinear source coordinates ``(o + 0.5) / k - 0.5``
    are exact binary fractions, so resizing a crop gives bit for bit the rows of the full resize, except
    the ``k`` result rows next to a cut (clamped differently); the crop keeps two source rows of margin
    around the rows ``hit``, and those border rows are dropped. Both axes have the same ``dst``: when the
    full resize is past :data:`TORCH_SMALL_OUTPUT` the crop grows to more than half of it per axis, so torch
    resizes crop and square with the same kernel. Other factors: the whole axis. The place is in the
    coordinates of the resized axis (the padded square); :func:`unpad_window` crops it.
    """
    k = pow2_factor(src, dst)
    idx = np.flatnonzero(hit)
    if k is None or idx.size == 0:
        return slice(0, src), dst, slice(0, dst), slice(0, dst)
    p0, p1 = max(int(idx[0]) - 2, 0), min(int(idx[-1]) + 3, src)
    need = min(src, (TORCH_SMALL_OUTPUT // 2) // k + 1) if 2 * dst > TORCH_SMALL_OUTPUT else 0
    p0 = max(min(p0, p1 - need), 0)
    p1 = max(p1, p0 + need)
    keep0 = 0 if p0 == 0 else k
    keep1 = (p1 - p0) * k if p1 == src else (p1 - p0 - 1) * k
    return slice(p0, p1), (p1 - p0) * k, slice(keep0, keep1), slice(p0 * k + keep0, p0 * k + keep1)


def unpad_window(keep: slice, place: slice, pad: int, n: int) -> tuple[slice, slice]:
    """Crop a window of the padded axis to the ``n`` real rows starting at ``pad``.

    ``keep`` (rows of the resized crop) lands at ``place`` (rows of the padded axis); returns the kept rows
    that are real and their canonical (unpadded) rows, both empty when the window holds padding only.
    """
    lo = min(max(place.start, pad), pad + n)
    hi = max(min(place.stop, pad + n), lo)
    start = keep.start + lo - place.start
    return slice(start, start + hi - lo), slice(lo - pad, hi - pad)


def block_window(hit: np.ndarray, pad: int, src: int, dst: int) -> tuple[slice, slice]:
    """One axis of ``Prepared.from_original``: (padded rows to resize, model rows they become).

    ``hit`` marks the non-zero rows of the real data, which sit at ``pad`` in the padded axis of length
    ``src``. When ``src`` is an integer multiple ``k`` of ``dst``, model row ``o`` of a bilinear or nearest
    downsampling reads only padded rows ``[o k, o k + k)`` (source coordinates ``(o + 0.5) k - 0.5`` and
    ``o k`` are exact), so the whole blocks around the non-zero rows resize to exactly the model rows of the
    full resize, and every other model row is 0. Other lengths: the whole axis.
    """
    idx = np.flatnonzero(hit)
    if src % dst or idx.size == 0:
        return slice(0, src), slice(0, dst)
    k = src // dst
    o0, o1 = (int(idx[0]) + pad) // k, (int(idx[-1]) + pad) // k + 1
    return slice(o0 * k, o1 * k), slice(o0, o1)


def real_part(window: slice, pad: int, n: int) -> slice:
    """The rows of the real data (length ``n`` at ``pad``) inside a ``window`` of the padded axis."""
    lo = min(max(window.start - pad, 0), n)
    return slice(lo, max(min(window.stop - pad, n), lo))


def padded_box(raw: np.ndarray, rows: slice, cols: slice, pad: tuple[int, int]) -> np.ndarray:
    """float32 C-ordered ``raw[rows, cols]`` for ``rows``/``cols`` of the zero-padded square (zeros outside ``raw``)."""
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start, *raw.shape[2:]), np.float32)
    rr, cc = real_part(rows, pad[0], raw.shape[0]), real_part(cols, pad[1], raw.shape[1])
    r0, c0 = rr.start + pad[0] - rows.start, cc.start + pad[1] - cols.start
    out[r0:r0 + rr.stop - rr.start, c0:c0 + cc.stop - cc.start] = raw[rr, cc]
    return out

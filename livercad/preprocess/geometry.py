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

import math

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


def dyadic_blocks(src: int, dst: int) -> tuple[int, int] | None:
    """``(q, p)``: ``src`` and ``dst`` as ``g`` blocks of ``q`` and ``p`` rows (``g = gcd``), when the resize scale
    ``src / dst = q / p`` is a dyadic fraction (``p`` a power of two), else ``None``.

    Then torch's bilinear source coordinates ``(o + 0.5) * q / p - 0.5`` are exact binary fractions, and a crop
    of whole blocks resizes to bit for bit the rows of the full resize (:func:`up_window`). 128 -> 512 is
    ``(1, 4)``, 192 -> 512 is ``(3, 8)``; 192 -> 366 is ``None``.

    Example:
        >>> dyadic_blocks(128, 512), dyadic_blocks(192, 512), dyadic_blocks(192, 366)
        ((1, 4), (3, 8), None)
    """
    if src <= 0 or dst <= src:
        return None
    g = math.gcd(src, dst)
    q, p = src // g, dst // g
    if p & (p - 1) or (2 * dst + 1) * q >= 1 << 24:  # not dyadic, or coordinates past float32's exact integers
        return None
    return q, p


def up_window(hit: np.ndarray, src: int, dst: int) -> tuple[slice, int, slice, slice]:
    """One axis of ``Prepared.to_canonical_box``: source rows, their resized length, rows kept, their place.

    With a dyadic scale (:func:`dyadic_blocks`: ``src`` rows in blocks of ``q`` become ``dst`` rows in blocks
    of ``p``) resizing a crop of whole blocks gives bit for bit the rows of the full resize, except next to
    a cut (clamped differently). The crop keeps two source blocks of margin around the blocks of the rows
    ``hit`` and drops one output block at each cut: an output row of a kept block reads source rows inside
    the crop only, and the rows that can read a ``hit`` row (the blocks of ``hit`` and one either side) are
    kept. Both axes have the same ``dst``: when the full resize is past :data:`TORCH_SMALL_OUTPUT` the crop
    grows to more than half of it per axis, so torch resizes crop and square with the same kernel. Other
    scales: the whole axis. The place is in the coordinates of the resized axis (the padded square);
    :func:`unpad_window` crops it.
    """
    blocks = dyadic_blocks(src, dst)
    idx = np.flatnonzero(hit)
    if blocks is None or idx.size == 0:
        return slice(0, src), dst, slice(0, dst), slice(0, dst)
    q, p = blocks
    nb = src // q
    b0, b1 = max(int(idx[0]) // q - 2, 0), min(int(idx[-1]) // q + 3, nb)
    need = min(nb, (TORCH_SMALL_OUTPUT // 2) // p + 1) if 2 * dst > TORCH_SMALL_OUTPUT else 0
    b0 = max(min(b0, b1 - need), 0)
    b1 = max(b1, b0 + need)
    keep0 = 0 if b0 == 0 else p
    keep1 = (b1 - b0) * p if b1 == nb else (b1 - b0 - 1) * p
    return slice(b0 * q, b1 * q), (b1 - b0) * p, slice(keep0, keep1), slice(b0 * p + keep0, b0 * p + keep1)


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


def padded_box(raw: np.ndarray, rows: slice, cols: slice, pad: tuple[int, int], order: str = "C") -> np.ndarray:
    """float32 ``raw[rows, cols]`` for ``rows``/``cols`` of the zero-padded square (zeros outside ``raw``).

    ``order``: the result's memory order (``"F"`` copies a slice-major ``raw`` without transposing it).
    """
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start, *raw.shape[2:]), np.float32, order=order)
    rr, cc = real_part(rows, pad[0], raw.shape[0]), real_part(cols, pad[1], raw.shape[1])
    r0, c0 = rr.start + pad[0] - rows.start, cc.start + pad[1] - cols.start
    out[r0:r0 + rr.stop - rr.start, c0:c0 + cc.stop - cc.start] = raw[rr, cc]
    return out

"""From a liver probability map to the final mask with MONAI post-processing transforms.

Threshold (``AsDiscrete``), keep the largest 3-D connected component (``KeepLargestConnectedComponent``,
26-connectivity), cut it at a narrow waist along the body axis (:mod:`livercad.segment.waist`) and fill
holes (in 3-D like ``FillHoles``, and per axial slice), each switchable in
:class:`~livercad.config.PostprocessConfig`. Applied on the canonical full-resolution grid by
:func:`livercad.segment.infer.segment_volume`. The chain runs on the bounding box of the thresholded
voxels plus a one-voxel background margin only: components lie inside that box, and a background
region inside it touches the box border exactly when it reaches the volume border in the whole map, so
the result is identical to running on the whole map (tested), several times faster on a large volume.
Hole filling is :func:`fill_slices`: every background region of an axial slice (``mask[:, :, z]`` of the
canonical (X, Y, Z) grid) that does not reach that slice's border is filled, from one labelling of the
background with an in-plane (8-connected) structure. This fills what MONAI's 3-D ``FillHoles`` fills (a region
enclosed in 3-D is enclosed in each of its slices: in-plane 8-connectivity is part of the 3-D full
connectivity, tested against MONAI's chain) and, in addition, holes that open onto the first or last slice of
the volume, which a 3-D fill leaves open (a cavity of a thin CT, cut by the end of the scan). A concavity
that reaches the slice's outer border (a notch) stays open. :func:`fill_enclosed` is the 3-D fill alone.
Memory: the threshold is written straight into the uint8 output (the comparison ``AsDiscrete`` makes, in
float32) and the component and hole steps run on that binary uint8 box, never on float copies of the
probability map: about 1 byte per voxel of the map plus ~12 per voxel of the box.

Example:
    >>> import numpy as np
    >>> prob = np.zeros((6, 6, 6), np.float32); prob[1:4, 1:4, 1:4] = 0.9; prob[5, 5, 5] = 0.8
    >>> prob[2, 2, 2] = 0.1  # a hole inside the big component
    >>> m = postprocess_mask(prob, PostprocessConfig())
    >>> int(m.sum()), int(m[5, 5, 5]), int(m[2, 2, 2])
    (27, 0, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.transforms import AsDiscrete, Compose, FillHoles, KeepLargestConnectedComponent, Lambda
from scipy import ndimage

from livercad.config import PostprocessConfig
from livercad.preprocess.prepare import CHUNK, Prepared
from livercad.runtime.backend import release_free_memory
from livercad.segment.waist import waist_cut


def _waist_channel(t: torch.Tensor) -> torch.Tensor:
    """:func:`waist_cut` of a channel-first ``(1, X, Y, Z)`` binary tensor (a no-op for 2-D maps)."""
    arr = torch.as_tensor(t).as_subclass(torch.Tensor)[0].numpy().astype(np.uint8)
    waist_cut(arr)
    return torch.from_numpy(arr.astype(np.float32))[None]


def postprocess_transform(cfg: PostprocessConfig) -> Compose:
    """The MONAI chain for ``cfg`` acting on a channel-first ``(1, X, Y, Z)`` probability tensor.

    The 3-D reference the fast path (:func:`postprocess_mask`, :func:`postprocess_binary`) is tested against;
    the fast path also fills holes per axial slice (:func:`fill_slices`); the tests apply that to this output.
    """
    steps: list[Any] = [AsDiscrete(threshold=cfg.threshold)]
    if cfg.largest_component:
        steps.append(KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False))
        if cfg.waist_cut:
            steps += [Lambda(_waist_channel), KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False)]
    if cfg.fill_holes:
        steps.append(FillHoles(applied_labels=[1]))
    return Compose(steps)


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """Set every background region that does not reach the array border to 1, in place (uint8 0/1 map).

    The same result as MONAI's ``FillHoles(applied_labels=[1])`` (full connectivity; regions touching the
    border are open), from one labelling of the background (``scipy.ndimage.label``) instead of a flood fill
    by repeated dilation.

    Example:
        >>> m = np.ones((3, 3, 3), np.uint8); m[1, 1, 1] = 0
        >>> int(fill_enclosed(m)[1, 1, 1])
        1
    """
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, n = ndimage.label(mask == 0, structure=structure)
    if n == 0:
        return mask
    open_ = np.zeros(n + 1, np.bool_)
    for axis in range(labels.ndim):
        for end in (0, -1):
            open_[np.unique(labels.take(end, axis=axis))] = True
    open_[0] = True  # label 0 is the foreground itself
    if not open_.all():
        mask[~open_[labels]] = 1
    return mask


def fill_slices(mask: np.ndarray) -> np.ndarray:
    """Fill, in place, the holes of every axial slice ``mask[:, :, z]`` of a uint8 0/1 map (2-D: the map).

    A hole is a background region of a slice, 8-connected in-plane, that does not reach the slice's border;
    every 3-D enclosed region (:func:`fill_enclosed`) is one too. One ``scipy.ndimage.label`` of the
    background with an in-plane structure, over the slices that hold foreground only.

    Args:
        mask: uint8 (0/1) map, 2-D or 3-D (axial slices along the last axis); overwritten with the result.

    Returns:
        ``mask`` itself.

    Example:
        >>> m = np.zeros((5, 5, 2), np.uint8); m[1:4, 1:4] = 1; m[2, 2, 1] = 0  # a hole open to the top
        >>> int(fill_slices(m)[2, 2, 1])
        1
    """
    vol = mask[:, :, None] if mask.ndim == 2 else mask
    zs = np.flatnonzero(vol.any(axis=(0, 1)))
    if zs.size == 0:
        return mask
    part = vol[:, :, zs[0]:zs[-1] + 1]
    structure = np.zeros((3, 3, 3), np.bool_)
    structure[:, :, 1] = True  # 8-connected within a slice, never across slices
    labels, n = _label_in_memory_order(part == 0, structure)
    if n == 0:
        return mask
    open_ = np.zeros(n + 1, np.bool_)
    for edge in (labels[[0, -1]], labels[:, [0, -1]]):
        open_[np.unique(edge)] = True
    open_[0] = True  # label 0 is the foreground itself
    if not open_.all():
        part[~open_[labels]] = 1
    return mask


def foreground_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box of the non-zero voxels plus ``margin`` voxels (clipped at 0), ``None`` when there are none.

    From the projections of ``mask`` on each axis (cheaper than labelling the volume). The default one-voxel
    margin is the background border the post-processing chain needs (module docstring).

    Example:
        >>> m = np.zeros((5, 6), np.uint8); m[2, 3] = 1
        >>> foreground_box(m), foreground_box(m, margin=0)
        ((slice(1, 4, None), slice(2, 5, None)), (slice(2, 3, None), slice(3, 4, None)))
    """
    fg = mask if mask.dtype == np.bool_ else mask != 0
    box = []
    for axis in range(fg.ndim):
        hit = np.flatnonzero(fg.any(axis=tuple(a for a in range(fg.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(max(int(hit[0]) - margin, 0), int(hit[-1]) + 1 + margin))
    return tuple(box)


def memory_order_view(arr: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(arr.T, True)`` when ``arr``'s first axis is its fastest in memory (a slice-major map, or a box of one),
    else ``(arr, False)``.

    scipy's labelling and morphology scan in C order; on the transposed view of a slice-major map they read
    memory in order. Full connectivity, the in-plane structure and the erosion cross (each transposed with the
    array) are symmetric under the transposition, so the result, transposed back, is the same.
    """
    flip = arr.ndim > 1 and abs(arr.strides[0]) < abs(arr.strides[-1])
    return (arr.T, True) if flip else (arr, False)


def _label_in_memory_order(binary: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label(binary, structure)``, computed on :func:`memory_order_view`."""
    view, flip = memory_order_view(binary)
    labels, n = ndimage.label(view, structure=structure.T if flip else structure)
    return (labels.T if flip else labels), n


def _largest(part: np.ndarray) -> np.ndarray:
    """The largest connected component of a uint8 0/1 map (MONAI, 26-connectivity in 3-D), as uint8.

    Runs on :func:`memory_order_view` of a slice-major map; the result has ``part``'s layout.
    """
    keep = KeepLargestConnectedComponent(applied_labels=[1], is_onehot=False)
    view, flip = memory_order_view(part)
    out = torch.as_tensor(keep(torch.from_numpy(view)[None])).as_subclass(torch.Tensor)[0].numpy()
    out = out.astype(np.uint8, copy=False)
    return out.T if flip else out


def postprocess_binary(mask: np.ndarray, cfg: PostprocessConfig | None = None) -> np.ndarray:
    """Largest component, waist cut + hole filling (as ``cfg`` says) of a thresholded uint8 0/1 map, in place.

    The waist cut (:func:`livercad.segment.waist.waist_cut`, 3-D maps with ``largest_component`` only) runs on
    the largest component; when it removes anything, the largest component of what is left is kept.

    Holes are filled per axial slice (:func:`fill_slices`, which includes the 3-D enclosed ones).

    Args:
        mask: uint8 (0/1) map, e.g. from :func:`threshold_canonical`; overwritten with the result.
        cfg: post-processing settings (the threshold is not used here).

    Returns:
        ``mask`` itself.
    """
    cfg = cfg or PostprocessConfig()
    box = foreground_box(mask.view(np.bool_))
    if box is not None and (cfg.largest_component or cfg.fill_holes):
        release_free_memory()  # what earlier stages freed goes back to the OS before the chain (~12 B per box voxel)
        part = mask[box].copy(order="K")  # the map's own layout (slice-major from threshold_canonical)
        if cfg.largest_component:
            part = _largest(part)
            if cfg.waist_cut and waist_cut(part):
                part = _largest(part)  # the cut can split what it leaves
        if cfg.fill_holes:
            fill_slices(part)
        mask[box] = part
        del part
        release_free_memory()
    return mask


def threshold_canonical(prepared: Prepared, prob_model: torch.Tensor, threshold: float) -> np.ndarray:
    """``prepared.to_canonical(prob_model) >= threshold`` as uint8, computed per :data:`CHUNK` slices.

    Equal to thresholding the whole float32 map (the resize treats slices independently) without ever
    holding it. When ``threshold > 0`` only the part of each chunk that can reach the threshold is resized:
    bilinear interpolation never exceeds its largest input (a 1e-6 guard covers rounding), so chunks whose
    slices all stay below it (those skipped by the coarse pass, most outside the liver) are not resized, and
    where the model size is the canonical size times a dyadic fraction (512 -> 128, 192 or 256) only the in-plane
    box around the source pixels at or above ``threshold - 1e-6`` is (:meth:`Prepared.to_canonical_box`;
    bit-identical, tested); elsewhere the result is 0.
    """
    maps = torch.as_tensor(prob_model, dtype=torch.float32)
    x, y, _ = prepared.canonical_shape
    out = np.zeros((x, y, maps.shape[0]), np.uint8, order="F")  # slice-major, as Prepared.to_canonical
    thr = np.float32(threshold)
    for z0 in range(0, maps.shape[0], CHUNK):
        chunk = maps[z0:z0 + CHUNK]
        hit = (chunk >= threshold - 1e-6).any(0) if threshold > 0 else torch.ones(chunk.shape[1:], dtype=torch.bool)
        if not bool(hit.any()):
            continue
        part, rows, cols = prepared.to_canonical_box(chunk, hit)
        np.greater_equal(part, thr, out=out[rows, cols, z0:z0 + CHUNK].view(np.bool_))
    return out


def postprocess_mask(prob: np.ndarray | torch.Tensor, cfg: PostprocessConfig | None = None) -> np.ndarray:
    """Threshold + largest component + hole filling (3-D and per axial slice) of a 2-D or 3-D probability map.

    Args:
        prob: liver probability in [0, 1] (any spatial shape; compared in float32, as MONAI's ``AsDiscrete``).
        cfg: post-processing settings (defaults: 0.5, largest component, fill holes).

    Returns:
        uint8 mask (0/1) of the same shape.
    """
    cfg = cfg or PostprocessConfig()
    if isinstance(prob, torch.Tensor):
        prob = prob.detach().as_subclass(torch.Tensor).to("cpu", torch.float32).numpy()
    arr = np.asarray(prob, dtype=np.float32)
    out = np.empty_like(arr, dtype=np.uint8)  # the map's layout (slice-major from Prepared.to_canonical)
    np.greater_equal(arr, np.float32(cfg.threshold), out=out.view(np.bool_))
    return postprocess_binary(out, cfg)


__all__ = ["PostprocessConfig", "fill_enclosed", "fill_slices", "foreground_box", "memory_order_view",
           "postprocess_binary", "postprocess_mask", "postprocess_transform", "threshold_canonical"]

"""Mask overlays for quality control and saliency galleries (PNG bytes, matplotlib without pyplot).

Orientation convention (:func:`radiological`, used by :func:`qc_png`): the input volume is in the
canonical RAS+ voxel order (``nibabel.as_closest_canonical``): array axis 0 runs towards the patient's
Right, axis 1 towards Anterior, axis 2 towards Superior. An axial slice ``arr[:, :, k]`` is shown as
radiologists read it, looking up from the feet: **anterior at the top, the patient's right on the image
left, the patient's left on the image right**. In array terms ``shown[r, c] = arr[I-1-c, J-1-r, k]``,
i.e. ``np.fliplr(np.rot90(arr[:, :, k]))``.

:func:`overlay_png` and :func:`gallery_png` draw 2-D arrays as they are (row 0 at the top); pass slices
through :func:`radiological` first when they come from a canonical volume.

Display window (:func:`display_window`, ``qc_png(modality=...)``): CT is shown in the fixed abdominal HU
window of preprocessing (:data:`livercad.config.CT_WINDOW`), so scanner padding (-3024 HU) and air do not
wash the picture out; MR and ultrasound use the 1st-99th percentiles of the body's voxels only; without a
modality, the 1st-99th percentiles of the whole slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from skimage.filters import threshold_otsu

from livercad.config import CT_WINDOW
from livercad.errors import InputError
from livercad.modality import family
from livercad.report.plots import figure_to_png, new_figure

MASK_COLOUR = "#ff2020"
"""Outline colour of the predicted mask."""
REF_COLOUR = "#20e020"
"""Outline colour of the ground-truth (reference) mask."""


def _check_3d(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(None, f"{name}: expected a 3-D (X, Y, Z) array, got shape {array.shape}")
    return array


def pick_slice(mask: np.ndarray) -> int:
    """Axial index (along the last axis) with the largest mask area; the middle slice if the mask is empty.

    Ties go to the lowest index.

    Example:
        >>> m = np.zeros((4, 4, 5), dtype=np.uint8); m[:2, :2, 1] = 1; m[:3, :3, 3] = 1
        >>> pick_slice(m), pick_slice(np.zeros((4, 4, 5)))
        (3, 2)
    """
    areas = (_check_3d("mask", mask) > 0).sum(axis=(0, 1))
    return int(np.argmax(areas)) if areas.any() else mask.shape[2] // 2


def radiological(slice2d: np.ndarray) -> np.ndarray:
    """Re-orient a canonical (RAS+) axial slice ``arr[:, :, k]`` for display (see the module docstring).

    Example:
        >>> s = np.zeros((3, 2)); s[0, 1] = 1  # patient's left-most column, anterior row
        >>> np.argwhere(radiological(s)).tolist()  # -> top row, right-most column
        [[0, 2]]
    """
    return np.fliplr(np.rot90(np.asarray(slice2d)))


def _body_values(image: np.ndarray) -> np.ndarray:
    """Finite voxels of a slice above Otsu's threshold of ``log(1 + v - min)`` (the body; all if that is <1 %)."""
    values = image[np.isfinite(image)]
    if values.size == 0 or values.min() == values.max():
        return values
    logs = np.log1p(values - values.min())
    body = values[logs > threshold_otsu(logs)]
    return body if body.size >= 0.01 * values.size else values


def display_window(image2d: np.ndarray, modality: str | None = None) -> tuple[float, float]:
    """Grey-scale window ``(low, high)`` for showing a slice of the given modality.

    * family ``ct`` (:func:`livercad.modality.family`): the fixed abdominal HU window of preprocessing,
      :data:`livercad.config.CT_WINDOW` (-160..240 HU), whatever the slice holds (padding, air, metal).
    * ``mr`` / ``us``: from the 1st percentile of the whole slice (the dark background: black) to the 99th
      percentile of the voxels inside the body, so a large dark background does not pull the top of the
      scale down, and a dark organ (the liver on T1) stays grey instead of being the body's black. Body =
      voxels above Otsu's threshold (``skimage``) of the slice's log intensities ``log(1 + v - min)``: in
      log space the background separates from every tissue, where a linear Otsu would split the (T1-dark)
      liver from the bright fat. If that leaves under 1 % of the voxels, or the slice is constant, all its
      voxels are used.
    * ``None``: the 1st-99th percentiles of the whole slice.

    Args:
        image2d: the slice (any shape; non-finite values are ignored).
        modality: modality name (``ct``, ``mr``, ``mr-t2``, ``us``, ...) or None.

    Returns:
        ``(low, high)`` with ``high > low`` (a constant slice gets ``(v, v + 1)``).

    Example:
        >>> display_window(np.full((4, 4), -3024.0), "CT")
        (-160.0, 240.0)
    """
    image = np.asarray(image2d, dtype=float)
    if modality is not None and family(modality) == "ct":
        low, high = CT_WINDOW
    else:
        finite = image[np.isfinite(image)]
        values = finite if modality is None else _body_values(image)
        low, high = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
        if modality is not None and finite.size:
            low = min(float(np.percentile(finite, 1)), float(low))
    if not high > low:  # constant image: anything maps to the bottom of the scale
        high = low + 1.0
    return float(low), float(high)


def _window(image: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is None:
        return display_window(image)
    low, high = window
    return (float(low), float(high)) if high > low else (float(low), float(low) + 1.0)


def _outline(ax: Axes, mask2d: np.ndarray, colour: str) -> bool:
    """Draw the 0.5 contour of ``mask2d`` (padded so shapes touching the border close); False if empty."""
    binary = np.asarray(mask2d) > 0
    if not binary.any():
        return False
    padded = np.pad(binary.astype(float), 1)
    rows, cols = padded.shape
    ax.contour(np.arange(-1, cols - 1), np.arange(-1, rows - 1), padded, levels=[0.5], colors=[colour],
               linewidths=1.8)
    return True


def _draw(ax: Axes, image2d: np.ndarray, mask2d: np.ndarray | None, heat: np.ndarray | None,
          ref2d: np.ndarray | None, window: tuple[float, float] | None, title: str) -> None:
    """Draw one overlay panel into ``ax``."""
    image = np.asarray(image2d, dtype=float)
    if image.ndim != 2:
        raise InputError(None, f"overlay image: expected a 2-D array, got shape {image.shape}")
    for name, extra in (("mask", mask2d), ("heat", heat), ("reference mask", ref2d)):
        if extra is not None and np.shape(extra) != image.shape:
            raise InputError(None, f"overlay {name}: expected shape {image.shape} like the image, "
                             f"got {np.shape(extra)}")
    low, high = _window(image, window)
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    if heat is not None:
        positive = np.clip(np.nan_to_num(np.asarray(heat, dtype=float)), 0, None)
        scale = positive.max() or 1.0
        ax.imshow(positive / scale, cmap="turbo", vmin=0, vmax=1, alpha=0.6 * positive / scale,
                  interpolation="bilinear")
    handles = []
    if ref2d is not None and _outline(ax, ref2d, REF_COLOUR):
        handles.append(Line2D([], [], color=REF_COLOUR, label="reference"))
    if mask2d is not None and _outline(ax, mask2d, MASK_COLOUR):
        handles.append(Line2D([], [], color=MASK_COLOUR, label="predicted"))
    ax.set_xlim(-0.5, image.shape[1] - 0.5)  # contours must not widen the view
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    if len(handles) > 1:
        ax.legend(handles=handles, loc="lower right", fontsize="x-small", framealpha=0.6)
    ax.set_title(title, fontsize="medium")
    ax.set_axis_off()


#: Height (inches) of the band above an overlay panel that holds its title.
TITLE_BAND = 0.4


def _panel_size(shape: tuple[int, ...], width: float) -> tuple[float, float]:
    rows, cols = shape[0], shape[1]
    return width, width * rows / max(cols, 1) + TITLE_BAND


def overlay_png(
    image2d: np.ndarray,
    mask2d: np.ndarray | None,
    *,
    title: str = "",
    heat: np.ndarray | None = None,
    ref2d: np.ndarray | None = None,
    window: tuple[float, float] | None = None,
) -> bytes:
    """One grey-scale slice with the mask outlined in red, an optional reference outline in green and an
    optional saliency heat map blended in (alpha grows with the positive heat).

    Args:
        image2d: 2-D image, drawn as is (row 0 at the top).
        mask2d: Predicted mask (non-zero = inside) or None.
        title: Title, e.g. the case id and verdict.
        heat: Saliency map of the same shape (negative values ignored) or None.
        ref2d: Ground-truth mask of the same shape or None.
        window: Display window (low, high); default the 1st-99th intensity percentiles.

    Example:
        >>> img = np.random.default_rng(0).random((32, 32)); m = np.zeros((32, 32)); m[8:20, 8:20] = 1
        >>> overlay_png(img, m, title="case 1: cirrhosis (0.91)")[:4]
        b'\\x89PNG'
    """
    fig = new_figure(*_panel_size(np.shape(image2d), 5.0))
    _draw(fig.add_subplot(), image2d, mask2d, heat, ref2d, window, title)
    return figure_to_png(fig)


def _mark_orientation(ax: Axes) -> None:
    """Letter the edges of a radiological axial panel: A (top), P (bottom), R (left), L (right)."""
    for x, y, letter in ((0.5, 0.98, "A"), (0.5, 0.02, "P"), (0.01, 0.5, "R"), (0.99, 0.5, "L")):
        ax.text(x, y, letter, transform=ax.transAxes, color="#ffd700", fontsize="small", fontweight="bold",
                ha="center" if x == 0.5 else ("left" if x < 0.5 else "right"),
                va="center" if y == 0.5 else ("top" if y > 0.5 else "bottom"))


def qc_png(
    volume_canonical: np.ndarray,
    mask_canonical: np.ndarray,
    *,
    title: str,
    ref_canonical: np.ndarray | None = None,
    modality: str | None = None,
) -> bytes:
    """Quality-control overlay: the axial slice with the largest mask area, in radiological display
    (anterior up, patient's right on the image left; the edges are marked A/P/R/L).

    Args:
        volume_canonical: 3-D image in canonical RAS+ voxel order.
        mask_canonical: Predicted mask, same shape.
        title: Title (the slice index is appended).
        ref_canonical: Optional ground-truth mask, same shape (outlined in green).
        modality: The volume's modality, for the display window (:func:`display_window`: fixed HU window
            for CT, the body's 1st-99th percentiles for MR/US); None: the slice's 1st-99th percentiles.

    Example:
        >>> vol = np.zeros((16, 12, 5)); mask = np.zeros_like(vol); mask[2:6, 6:10, 3] = 1
        >>> qc_png(vol, mask, title="case 1")[:4]
        b'\\x89PNG'
    """
    volume = _check_3d("volume", volume_canonical)
    for name, other in (("mask", mask_canonical), ("reference mask", ref_canonical)):
        if other is not None and np.shape(other) != volume.shape:
            raise InputError(None, f"QC {name}: expected shape {volume.shape} like the volume, "
                             f"got {np.shape(other)}")
    k = pick_slice(np.asarray(mask_canonical))
    image = radiological(volume[:, :, k])
    ref = None if ref_canonical is None else radiological(np.asarray(ref_canonical)[:, :, k])
    width, height = _panel_size(image.shape, 5.0)
    fig = new_figure(width, height, layout=None)  # one fixed panel under a title band: no layout pass to run
    ax = fig.add_axes((0.0, 0.0, 1.0, (height - TITLE_BAND) / height))
    _draw(ax, image, radiological(np.asarray(mask_canonical)[:, :, k]), None, ref,
          display_window(image, modality), f"{title} (axial slice {k})")
    _mark_orientation(ax)
    return figure_to_png(fig)


def gallery_png(
    items: Sequence[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]],
    *,
    ncols: int = 4,
) -> bytes:
    """A grid of overlays ``(image2d, mask2d | None, heat2d | None, title)``, e.g. a saliency gallery.

    Example:
        >>> img = np.zeros((16, 16)); heat = np.zeros((16, 16)); heat[4:8, 4:8] = 1
        >>> gallery_png([(img, None, heat, "a"), (img, img > 0, None, "b")], ncols=2)[:4]
        b'\\x89PNG'
    """
    if ncols < 1:
        raise InputError(None, f"gallery: expected ncols >= 1, got {ncols}")
    if not items:
        fig = new_figure(4.0, 1.0)
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
        return figure_to_png(fig)
    cols = min(ncols, len(items))
    rows = math.ceil(len(items) / cols)
    width, height = _panel_size(np.shape(items[0][0]), 3.0)
    fig = new_figure(width * cols, height * rows)
    for index, (image, mask, heat, title) in enumerate(items):
        _draw(fig.add_subplot(rows, cols, index + 1), image, mask, heat, None, None, title)
    return figure_to_png(fig)


__all__ = ["MASK_COLOUR", "REF_COLOUR", "display_window", "gallery_png", "overlay_png", "pick_slice", "qc_png",
           "radiological"]

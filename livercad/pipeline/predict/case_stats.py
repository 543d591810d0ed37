"""Per-case liver figures of a prediction: size, intensity statistics and segmentation metrics.

Sizes need the pixel spacing: when the image gives none (a 2-D image without ``spacing=``, recorded as
``spacing_known: false``) the liver volume and area are not reported, nor the metrics in mm / mL (HD95,
surface distances, volumes); Dice, IoU and the relative volume error are. The intensity statistics are
computed on the mask eroded by :data:`EROSION_VOXELS` voxels and need no spacing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livercad.types import Volume

#: The liver mask is eroded by this many voxels before the intensity statistics (keeps the edge out).
EROSION_VOXELS = 2
#: Segmentation metrics whose name ends so need the spacing (left out when it is unknown).
SIZED_SUFFIXES = ("_mm", "_ml")


def liver_intensity(data: np.ndarray, mask: np.ndarray, modality: str) -> dict[str, Any]:
    """Mean, median and SD of the image inside the liver mask eroded by :data:`EROSION_VOXELS` voxels.

    Axes of length 1 (a 2-D frame) are dropped first, so a single slice is eroded in plane only. The unit
    is ``HU`` for CT, ``au`` (arbitrary units) otherwise; the values are ``None`` when erosion leaves nothing.

    Example:
        >>> img = np.full((9, 9, 9), 50.0); img[4, 4, 4] = 80.0
        >>> m = np.zeros((9, 9, 9), np.uint8); m[2:7, 2:7, 2:7] = 1
        >>> liver_intensity(img, m, "ct")
        {'liver_mean': 80.0, 'liver_median': 80.0, 'liver_sd': 0.0, 'intensity_unit': 'HU'}
    """
    from scipy import ndimage

    from livercad.segment.postprocess import foreground_box, memory_order_view

    out: dict[str, Any] = {"liver_mean": None, "liver_median": None, "liver_sd": None,
                           "intensity_unit": "HU" if modality == "ct" else "au"}
    m = np.squeeze(np.asarray(mask) > 0)
    box = foreground_box(m, margin=0)
    if box is None or not m[box].any():  # the second test: a 0-d (1-voxel) mask, whose box is ()
        return out
    view, flip = memory_order_view(m[box])  # outside the box is 0 anyway; a slice-major mask: its transpose
    inner = ndimage.binary_erosion(view, iterations=EROSION_VOXELS)
    inner = inner.T if flip else inner
    values = np.squeeze(np.asarray(data))[box][inner].astype(np.float64)
    if values.size:
        out.update(liver_mean=float(values.mean()), liver_median=float(np.median(values)),
                   liver_sd=float(values.std(ddof=1)) if values.size > 1 else 0.0)
    return out


def liver_size(mask: np.ndarray, volume: Volume, *, spacing_known: bool, has_thickness: bool = True
               ) -> dict[str, float | None]:
    """``liver_volume_ml`` and, for a single-slice image, ``liver_area_cm2`` of a mask on ``volume``'s grid.

    Args:
        mask: the liver mask.
        volume: the image it was computed on (spacing in mm).
        spacing_known: ``False``: the spacing is a placeholder; both are ``None``.
        has_thickness: ``False`` for images without a slice thickness (PNG/JPEG): no volume.

    Example:
        >>> v = Volume(np.zeros((4, 4, 1), np.float32), np.eye(4), None, (2.0, 5.0, 1.0))
        >>> liver_size(np.ones((4, 4, 1)), v, spacing_known=True, has_thickness=False)
        {'liver_volume_ml': None, 'liver_area_cm2': 1.6}
    """
    if not spacing_known:
        return {"liver_volume_ml": None, "liver_area_cm2": None}
    n = float(np.count_nonzero(mask))
    area = n * volume.spacing[0] * volume.spacing[1] / 100.0 if volume.shape[2] == 1 else None
    return {"liver_volume_ml": n * volume.voxel_volume_ml if has_thickness else None, "liver_area_cm2": area}


def spleen_stats(volume: Volume, spleen: np.ndarray | None, modality: str, liver_mean: float | None, *,
                 spacing_known: bool, has_thickness: bool = True) -> dict[str, float | None]:
    """Another tool's spleen: its volume, its mean intensity (eroded as the liver is) and liver − spleen.

    Empty without a spleen mask; the volume is ``None`` where the liver's would be (unknown spacing, 2-D).

    Example:
        >>> v = Volume(np.full((9, 9, 9), 40.0, np.float32), np.eye(4), None, (1.0, 1.0, 1.0))
        >>> s = np.zeros((9, 9, 9), bool); s[1:8, 1:8, 1:8] = True
        >>> spleen_stats(v, s, "ct", 30.0, spacing_known=True)
        {'spleen_volume_ml': 0.343, 'spleen_mean': 40.0, 'liver_minus_spleen': -10.0}
    """
    if spleen is None:
        return {}
    size = liver_size(spleen, volume, spacing_known=spacing_known, has_thickness=has_thickness)["liver_volume_ml"]
    mean = liver_intensity(volume.data, spleen, modality)["liver_mean"]
    diff = liver_mean - mean if liver_mean is not None and mean is not None else None
    return {"spleen_volume_ml": size, "spleen_mean": mean, "liver_minus_spleen": diff}


def segmentation_scores(mask: np.ndarray, gt: np.ndarray | None, spacing: Any, *, spacing_known: bool = True
                        ) -> dict[str, float]:
    """Metrics against the reference mask (empty without one); those in mm / mL only with a known spacing."""
    if gt is None:
        return {}
    from livercad.metrics.segmentation import segmentation_metrics

    scores = {k: float(v) for k, v in segmentation_metrics(mask.astype(bool), gt.astype(bool), spacing).items()}
    return scores if spacing_known else {k: v for k, v in scores.items() if not k.endswith(SIZED_SUFFIXES)}


def size_text(sizes: dict[str, float | None]) -> str:
    """The liver size for a QC title: ``liver 1520 mL``, ``liver 81.3 cm²``, or ``liver size unknown (no spacing)``.

    Example:
        >>> size_text({"liver_volume_ml": None, "liver_area_cm2": 81.25})
        'liver 81.2 cm²'
    """
    if sizes.get("liver_area_cm2") is not None:
        return f"liver {sizes['liver_area_cm2']:.1f} cm²"
    if sizes.get("liver_volume_ml") is not None:
        return f"liver {sizes['liver_volume_ml']:.0f} mL"
    return "liver size unknown (no spacing)"

"""Segmentation metrics against hand-worked cases and an independent scipy computation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from livercad.errors import InputError
from livercad.metrics.segmentation import (
    dice,
    hd95,
    iou,
    mean_surface_distance,
    segmentation_metrics,
    summarize,
    volume_error,
    volume_ml,
)

SPACING = (0.7, 1.3, 3.0)


def cube(shape=(20, 20, 14), lo=(4, 4, 3), size=(8, 8, 6), shift=(0, 0, 0)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[tuple(slice(a + s, a + s + n) for a, s, n in zip(lo, shift, size, strict=True))] = True
    return m


def blob(seed: int, shape=(26, 24, 14), border: bool = False) -> np.ndarray:
    """A smooth random blob, kept off the array border unless ``border``."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.0)
    m = field > np.quantile(field, 0.7)
    if not border:
        m[[0, -1]], m[:, [0, -1]], m[:, :, [0, -1]] = False, False, False
    return m


def reference_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Independent surface distances: edge voxels = mask minus its erosion, exact EDT in mm.

    The erosion runs on the masks extended beyond the array by edge replication: the array faces are no surface.
    """

    def surface(m):
        inner = (slice(1, -1),) * m.ndim
        return m & ~ndimage.binary_erosion(np.pad(m, 1, mode="edge"))[inner]

    sa, sb = surface(a), surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return d_ab, d_ba


def test_dice_and_iou_of_offset_cubes_by_hand():
    a, b = cube(), cube(shift=(0, 2, 0))
    inter = 8 * (8 - 2) * 6  # overlap along axis 1 shrinks by the 2-voxel shift
    assert dice(a, b) == pytest.approx(2 * inter / (2 * 8 * 8 * 6))
    assert iou(a, b) == pytest.approx(inter / (2 * 8 * 8 * 6 - inter))


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_iou_equal_set_formula_on_random_masks(seed):
    a, b = blob(seed), blob(seed + 10)
    inter, sa, sb = (a & b).sum(), a.sum(), b.sum()
    assert dice(a, b) == pytest.approx(2 * inter / (sa + sb), rel=1e-6)
    assert iou(a.astype(np.uint8), b.astype(np.uint8)) == pytest.approx(inter / (a | b).sum(), rel=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_hd95_of_shifted_cube_is_shift_times_spacing(axis, k):
    shift = [0, 0, 0]
    shift[axis] = k
    a, b = cube(), cube(shift=tuple(shift))
    expected = k * SPACING[axis]
    assert hd95(a, b, SPACING) == pytest.approx(expected, rel=1e-5)
    d_ab, d_ba = reference_distances(a, b, SPACING)
    assert max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)) == pytest.approx(expected)


@pytest.mark.parametrize(("seed", "border"), [(0, False), (3, False), (4, True)])
def test_distances_equal_independent_edt_computation(seed, border):
    a, b = blob(seed, border=border), blob(seed + 1, border=border)
    d_ab, d_ba = reference_distances(a, b, SPACING)
    ref_hd = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    ref_msd = np.concatenate([d_ab, d_ba]).mean()
    assert hd95(a, b, SPACING) == pytest.approx(ref_hd, rel=1e-5)
    assert mean_surface_distance(a, b, SPACING) == pytest.approx(ref_msd, rel=1e-5)
    assert hd95(a, b, SPACING) != pytest.approx(hd95(a, b, (1.0, 1.0, 1.0)))  # spacing is used


def test_segmentation_metrics_agrees_with_single_metrics():
    a, b = blob(5), blob(6)
    m = segmentation_metrics(a, b, SPACING)
    assert set(m) == {
        "dice", "iou", "hd95_mm", "msd_mm", "hd95_inplane_mm", "msd_inplane_mm", "volume_ml", "ref_volume_ml",
        "volume_error_ml", "volume_error_rel",
    }  # fmt: skip
    assert m["dice"] == dice(a, b) and m["iou"] == iou(a, b)
    assert m["hd95_mm"] == pytest.approx(hd95(a, b, SPACING), rel=1e-5)
    assert m["msd_mm"] == pytest.approx(mean_surface_distance(a, b, SPACING), rel=1e-5)
    assert m["volume_ml"] == pytest.approx(a.sum() * 0.7 * 1.3 * 3.0 / 1000)
    assert m["ref_volume_ml"] == pytest.approx(b.sum() * 0.7 * 1.3 * 3.0 / 1000)
    assert m["volume_error_ml"] == pytest.approx(m["volume_ml"] - m["ref_volume_ml"])


def inplane_reference(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float]:
    """Independent in-plane HD95 / MSD: per slice holding both masks, 2-D EDT distances, pooled."""
    both = [z for z in range(a.shape[2]) if a[:, :, z].any() and b[:, :, z].any()]
    pairs = [reference_distances(a[:, :, z], b[:, :, z], spacing[:2]) for z in both]
    d_ab, d_ba = np.concatenate([d[0] for d in pairs]), np.concatenate([d[1] for d in pairs])
    return max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), np.concatenate([d_ab, d_ba]).mean()


@pytest.mark.parametrize(("seed", "border"), [(5, False), (7, True)])
def test_inplane_distances_equal_independent_per_slice_computation(seed, border):
    a, b = blob(seed, border=border), blob(seed + 1, border=border)
    ref_hd, ref_msd = inplane_reference(a, b, SPACING)
    m = segmentation_metrics(a, b, SPACING)
    assert m["hd95_inplane_mm"] == pytest.approx(ref_hd, rel=1e-5)
    assert m["msd_inplane_mm"] == pytest.approx(ref_msd, rel=1e-5)


def test_thin_slab_shifted_in_plane_by_hand():
    """3 slices, the liver crossing the whole y extent: the only surface is the x edge, 2 voxels apart."""
    ref = np.zeros((20, 16, 3), bool)
    ref[:10] = True
    pred = np.zeros_like(ref)
    pred[:12] = True  # ref shifted by 2 voxels along x
    m = segmentation_metrics(pred, ref, SPACING)
    for key in ("hd95_mm", "msd_mm", "hd95_inplane_mm", "msd_inplane_mm"):
        assert m[key] == pytest.approx(2 * SPACING[0], rel=1e-6), key  # the faces used to pull msd to ~0.3 mm
    assert mean_surface_distance(pred, ref, SPACING) == pytest.approx(2 * SPACING[0], rel=1e-6)
    assert hd95(pred, ref, SPACING) == pytest.approx(2 * SPACING[0], rel=1e-6)
    square = cube((30, 30, 3), (5, 6, 0), (15, 16, 3))  # an in-plane square through all 3 slices, shifted
    m = segmentation_metrics(np.roll(square, 2, axis=0), square, SPACING)
    d_ab, d_ba = reference_distances(np.roll(square, 2, axis=0), square, SPACING)
    assert m["msd_mm"] == pytest.approx(np.concatenate([d_ab, d_ba]).mean(), rel=1e-6)
    assert m["msd_mm"] == pytest.approx(m["msd_inplane_mm"], rel=1e-6) and m["msd_mm"] > 0.5 * 2 * SPACING[0]


def test_identical_masks_touching_the_faces_give_zero_distances():
    a = blob(2, border=True)
    slab = cube((12, 10, 3), (2, 2, 0), (6, 5, 3))
    full = np.ones((4, 5, 3), bool)  # no edge inside the array: the faces count, distances still 0
    for m in (a, slab, full, slab[:, :, 1]):
        out = segmentation_metrics(m, m, SPACING[: m.ndim])
        assert out["dice"] == 1.0
        assert all(out[k] == 0.0 for k in ("hd95_mm", "msd_mm", "hd95_inplane_mm", "msd_inplane_mm"))


def test_no_future_or_user_warning_from_monai():
    a, b = blob(3, border=True), blob(4, border=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", UserWarning)
        segmentation_metrics(a, b, SPACING)
        hd95(a, b, SPACING)
        mean_surface_distance(a, b, SPACING)


def test_volume_by_hand():
    m = np.zeros((10, 10, 10), np.uint8)
    m[:, :, :8] = 1  # 800 voxels
    assert volume_ml(np.ones((10, 10, 10), bool), (0.5, 0.5, 2.0)) == pytest.approx(0.5)  # 1000 * 0.5 mm3
    assert volume_ml(m, (1.0, 1.0, 1.0)) == pytest.approx(0.8)
    err = volume_error(np.ones((10, 10, 10), bool), m, (1.0, 1.0, 1.0))
    assert err["abs_ml"] == pytest.approx(0.2) and err["rel"] == pytest.approx(0.25)


def test_empty_policies():
    empty, full = np.zeros((6, 6, 6), bool), cube((6, 6, 6), (1, 1, 1), (3, 3, 3))
    assert math.isnan(dice(empty, empty)) and math.isnan(iou(empty, empty))
    assert dice(empty, empty, empty="one") == 1.0 and iou(empty, empty, empty="one") == 1.0
    assert dice(empty, empty, empty="zero") == 0.0
    for policy in ("nan", "one", "zero"):
        assert dice(full, empty, empty=policy) == 0.0 and dice(empty, full, empty=policy) == 0.0
        assert iou(empty, full, empty=policy) == 0.0
    for f in (hd95, mean_surface_distance):
        assert all(math.isnan(f(x, y, (1, 1, 1))) for x, y in [(empty, full), (full, empty), (empty, empty)])
    assert math.isnan(volume_error(full, empty, (1, 1, 1))["rel"])
    for x, y in [(full, empty), (empty, full), (empty, empty)]:
        m = segmentation_metrics(x, y, (1, 1, 1))
        assert all(math.isnan(m[k]) for k in ("hd95_mm", "msd_mm", "hd95_inplane_mm", "msd_inplane_mm"))
    assert segmentation_metrics(full, empty, (1, 1, 1))["dice"] == 0.0
    apart = np.zeros((6, 6, 6), bool)
    apart[1:4, 1:4, 4:] = True  # both present, never in the same slice: 3-D distances, no in-plane ones
    m = segmentation_metrics(full, apart, (1, 1, 1))
    assert m["hd95_mm"] > 0 and math.isnan(m["hd95_inplane_mm"]) and math.isnan(m["msd_inplane_mm"])


def test_bad_inputs_raise_input_error():
    a = cube()
    with pytest.raises(InputError, match="same shape"):
        dice(a, a[:-1])
    with pytest.raises(InputError, match="binary"):
        dice(a * 0.5, a)
    with pytest.raises(InputError, match="spacing"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(InputError, match="empty"):
        dice(a, a, empty="none")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    arrays(bool, (5, 4, 3), elements=st.booleans()),
    arrays(bool, (5, 4, 3), elements=st.booleans()),
)
def test_dice_symmetric_bounded_and_consistent_with_iou(a, b):
    d = dice(a, b, empty="one")
    assert d == dice(b, a, empty="one")
    assert 0.0 <= d <= 1.0
    j = iou(a, b, empty="one")
    assert d == pytest.approx(2 * j / (1 + j), abs=1e-6)


def test_summarize_drops_nans_and_matches_numpy():
    values = [0.9, 0.95, float("nan"), 0.97, 0.93]
    s = summarize(values, n_boot=500)
    kept = np.array([0.9, 0.95, 0.97, 0.93])
    assert (s["n"], s["n_nan"]) == (4, 1)
    assert s["mean"] == pytest.approx(kept.mean()) and s["median"] == pytest.approx(np.median(kept))
    assert s["sd"] == pytest.approx(kept.std(ddof=1))
    assert (s["min"], s["max"]) == (0.9, 0.97)
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    assert summarize(values, n_boot=500) == s  # seeded
    assert summarize([0.5] * 5)["ci_low"] == summarize([0.5] * 5)["ci_high"] == 0.5
    assert math.isnan(summarize([float("nan")])["mean"]) and summarize([float("nan")])["n_nan"] == 1


def test_summarize_ci_matches_normal_theory_for_large_samples():
    x = np.random.default_rng(0).normal(10.0, 2.0, 400)
    s = summarize(x, n_boot=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert s["ci_high"] - s["ci_low"] == pytest.approx(2 * half, rel=0.12)
    assert (s["ci_low"] + s["ci_high"]) / 2 == pytest.approx(x.mean(), abs=0.1 * half)

"""The waist cut removes a leak attached through the liver's thin tip (below or above), and leaves livers whose
area profile only shrinks (a long Riedel's lobe, a ragged tip, a thin slab, a 2-D image) as they are."""

from __future__ import annotations

import numpy as np
import pytest

from livercad.config import PostprocessConfig
from livercad.phantom.synth import random_case
from livercad.segment.postprocess import postprocess_mask
from livercad.segment.waist import MIN_SLICES, waist_cut


def _liver(nz: int = 40) -> np.ndarray:
    """A liver-like mask: an ellipsoid body in the upper slices that narrows to a tip towards slice 0."""
    x, y, z = np.mgrid[:48, :48, :nz].astype(np.float32)
    body = ((x - 28) / 16) ** 2 + ((y - 24) / 14) ** 2 + ((z - 0.7 * nz) / (0.45 * nz)) ** 2 <= 1
    return (body & (z >= 0.35 * nz)).astype(np.uint8)  # cut flat at the bottom: the tip below is the narrowest


def _with_tip_and_leak(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m`` with a 2x2 tip going down from its lowest slice, then a bowel-like blob below the tip."""
    out = m.copy()
    low = int(np.flatnonzero(m.any((0, 1)))[0])
    out[34:36, 24:26, low - 4:low] = 1  # the tip
    liver = out.copy()
    out[26:44, 16:32, 1:low - 4] = 1  # the leak
    return out, liver


def test_cut_removes_a_leak_below_the_tip_and_keeps_the_liver() -> None:
    leaky, liver = _with_tip_and_leak(_liver())
    got = leaky.copy()
    assert waist_cut(got) and np.array_equal(got, liver)


def test_cut_removes_a_leak_above_the_dome() -> None:
    leaky, liver = _with_tip_and_leak(_liver())
    flipped = leaky[:, :, ::-1].copy()
    assert waist_cut(flipped) and np.array_equal(flipped, liver[:, :, ::-1])


def test_along_another_axis() -> None:
    leaky, liver = _with_tip_and_leak(_liver())
    got = np.moveaxis(leaky, 2, 0).copy()
    assert waist_cut(got, axis=0) and np.array_equal(got, np.moveaxis(liver, 2, 0))


def test_a_shrinking_profile_is_left_alone() -> None:
    m = _liver()
    m[30:36, 22:28, 0:16] = 1  # a long narrow Riedel's lobe below the body: shrinks, never grows again
    m[31:33, 23:25, 0:3] = 0
    ragged = m.copy()
    low = int(np.flatnonzero(m.any((0, 1)))[0])
    assert low == 0
    for z, n in zip(range(12), (1, 3, 2, 4, 2, 5, 3, 6, 4, 6, 5, 7), strict=True):  # a ragged tip of a few voxels
        ragged[:, :, z] = 0
        ragged[30:30 + n, 22, z] = 1
    for mask in (m, ragged):
        got = mask.copy()
        assert not waist_cut(got) and np.array_equal(got, mask)


def test_thin_volumes_and_2d_images_are_never_cut() -> None:
    leaky, _ = _with_tip_and_leak(_liver())
    rows = np.flatnonzero(leaky.any((0, 1)))
    slab = leaky[:, :, rows[0]:rows[0] + MIN_SLICES - 1].copy()
    got = slab.copy()
    assert not waist_cut(got) and np.array_equal(got, slab)
    image = leaky[:, :, 20].copy()
    got = image.copy()
    assert not waist_cut(got) and np.array_equal(got, image)


@pytest.mark.parametrize("version", [1, 3])
def test_phantom_ground_truth_livers_are_never_cut(version: int) -> None:
    for seed in range(1):
        mask = (random_case("w", seed=7000 + seed, version=version).mask > 0).astype(np.uint8)
        got = mask.copy()
        assert mask.any() and not waist_cut(got) and np.array_equal(got, mask)


def test_postprocess_applies_the_cut_by_default_and_can_switch_it_off() -> None:
    leaky, liver = _with_tip_and_leak(_liver())
    prob = np.where(leaky > 0, 0.9, 0.05).astype(np.float32)
    assert np.array_equal(postprocess_mask(prob), liver)
    assert np.array_equal(postprocess_mask(prob, PostprocessConfig(waist_cut=False)), leaky)

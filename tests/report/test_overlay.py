"""Tests of livercad.report.overlay: slice choice, radiological orientation, rendered overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.image import imread

from livercad.config import PreprocessConfig
from livercad.errors import InputError
from livercad.report.overlay import display_window, gallery_png, overlay_png, pick_slice, qc_png, radiological


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(io.BytesIO(png), format="png")[..., :3]


def red_pixels(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] > 0.6) & (image[..., 1] < 0.35) & (image[..., 2] < 0.35)


def green_pixels(image: np.ndarray) -> np.ndarray:
    return (image[..., 1] > 0.6) & (image[..., 0] < 0.35) & (image[..., 2] < 0.35)


def test_pick_slice_largest_area_ties_and_empty() -> None:
    mask = np.zeros((6, 6, 5), dtype=np.uint8)
    mask[:2, :2, 1] = 1  # area 4
    mask[:3, :3, 3] = 1  # area 9: the largest
    mask[0, :, 4] = 1  # area 6
    assert pick_slice(mask) == 3
    tie = np.zeros((4, 4, 4), dtype=bool)
    tie[:2, :2, 1] = tie[2:, 2:, 2] = True
    assert pick_slice(tie) == 1
    assert pick_slice(np.zeros((4, 4, 7))) == 3
    assert pick_slice(np.full((2, 2, 3), 0.7)) == 0  # non-binary: > 0 counts, ties -> first


def test_pick_slice_rejects_2d() -> None:
    with pytest.raises(InputError, match=r"3-D.*\(4, 4\)"):
        pick_slice(np.zeros((4, 4)))


def test_radiological_formula_against_direct_indexing() -> None:
    arr = np.arange(5 * 3).reshape(5, 3)  # (I, J): I towards patient's right, J towards anterior
    shown = radiological(arr)
    n_i, n_j = arr.shape
    assert shown.shape == (n_j, n_i)
    for r in range(n_j):
        for c in range(n_i):
            assert shown[r, c] == arr[n_i - 1 - c, n_j - 1 - r]


def test_radiological_left_anterior_blob_goes_top_right() -> None:
    sl = np.zeros((40, 30))
    sl[2:12, 22:29] = 1  # low i = patient's left, high j = anterior
    rows, cols = np.nonzero(radiological(sl))
    assert rows.max() < 15 and cols.min() > 25  # top (anterior) and right (patient's left)


def _image_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (r0, r1, c0, c1) of the black image area (the volume is all zeros)."""
    dark = image.max(axis=2) < 0.08
    rows = np.nonzero(dark.mean(axis=1) > 0.3)[0]  # title text is dark too, but sparse
    cols = np.nonzero(dark[rows].mean(axis=0) > 0.5)[0]
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize(
    ("blob", "expect_top", "expect_right"),
    [
        ((slice(2, 9), slice(16, 23)), True, True),  # patient left-anterior -> image right-top
        ((slice(23, 30), slice(1, 8)), False, False),  # patient right-posterior -> image left-bottom
        ((slice(23, 30), slice(16, 23)), True, False),  # patient right-anterior -> image left-top
    ],
)
def test_qc_png_radiological_orientation(blob: tuple[slice, slice], expect_top: bool, expect_right: bool) -> None:
    volume = np.zeros((32, 24, 6), dtype=np.float32)  # canonical RAS+: (R, A, S)
    mask = np.zeros(volume.shape, dtype=np.uint8)
    mask[blob[0], blob[1], 2] = 1
    mask[blob[0], blob[1], 4][:2] = 1  # slice 4 is smaller: slice 2 must be shown
    image = decode(qc_png(volume, mask, title="case"))
    r0, r1, c0, c1 = _image_box(image)
    assert (c1 - c0) > (r1 - r0)  # 32 voxels along R-L drawn horizontally, 24 along A-P vertically
    rows, cols = np.nonzero(red_pixels(image))
    assert rows.size > 20
    assert (rows.mean() < (r0 + r1) / 2) == expect_top
    assert (cols.mean() > (c0 + c1) / 2) == expect_right


def test_qc_png_reference_outline_and_shape_check() -> None:
    volume = np.zeros((20, 20, 3))
    mask = np.zeros(volume.shape)
    mask[5:12, 5:12, 1] = 1
    ref = np.zeros(volume.shape)
    ref[6:14, 6:14, 1] = 1
    image = decode(qc_png(volume, mask, title="case", ref_canonical=ref))
    assert green_pixels(image).sum() > 20 and red_pixels(image).sum() > 20
    assert green_pixels(decode(qc_png(volume, mask, title="case"))).sum() == 0
    with pytest.raises(InputError, match="reference mask"):
        qc_png(volume, mask, title="case", ref_canonical=ref[:, :, :2])


def test_overlay_png_heat_changes_picture_and_shapes_are_checked() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((24, 32))
    heat = np.zeros((24, 32))
    heat[4:10, 20:28] = 1.0
    plain = decode(overlay_png(image, None, title="x", window=(0.0, 1.0)))
    heated = decode(overlay_png(image, None, title="x", heat=heat, window=(0.0, 1.0)))
    assert plain.shape == heated.shape
    changed = np.nonzero(np.abs(plain - heated).max(axis=2) > 0.1)
    assert changed[0].size > 0
    h, w = plain.shape[:2]
    assert changed[0].mean() < h / 2 and changed[1].mean() > w / 2  # where the heat is: upper right
    with pytest.raises(InputError, match="heat"):
        overlay_png(image, None, heat=np.zeros((4, 4)))
    with pytest.raises(InputError, match="2-D"):
        overlay_png(np.zeros((2, 3, 4)), None)


def test_overlay_png_empty_and_full_masks_do_not_fail() -> None:
    image = np.zeros((16, 16))
    assert red_pixels(decode(overlay_png(image, np.zeros((16, 16))))).sum() == 0
    assert red_pixels(decode(overlay_png(image, np.ones((16, 16))))).sum() > 20  # outline at the border


def test_gallery_png_grid_size() -> None:
    image = np.zeros((16, 16))
    item = (image, image > 0, None, "t")
    one_row = decode(gallery_png([item] * 3, ncols=4))
    two_rows = decode(gallery_png([item] * 5, ncols=4))
    assert two_rows.shape[0] > 1.8 * one_row.shape[0] * 0.9
    assert two_rows.shape[1] > one_row.shape[1]
    decode(gallery_png([], ncols=2))
    with pytest.raises(InputError, match="ncols"):
        gallery_png([item], ncols=0)


def _abdomen(body: float, liver: float, outside: float, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A one-slice (n, n, 1) canonical volume: a body disc on ``outside`` with a square liver, and its mask."""
    x, y = np.ogrid[:n, :n]
    volume = np.where((x - n / 2) ** 2 + (y - n / 2) ** 2 < (0.4 * n) ** 2, body, outside)[:, :, None]
    volume = volume + np.random.default_rng(0).normal(0, 5, volume.shape)
    mask = np.zeros(volume.shape, np.uint8)
    mask[n // 4: n // 2, n // 4: 3 * n // 4, 0] = 1
    volume[mask > 0] = liver + np.random.default_rng(1).normal(0, 5, int(mask.sum()))
    return volume, mask


def _liver_grey(png: bytes) -> float:
    """Median grey level in the middle of the red outline of the rendered QC image."""
    image = decode(png)
    rows, cols = np.nonzero(red_pixels(image))
    r, c = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    patch = image[r - 4: r + 5, c - 4: c + 5]
    assert np.allclose(patch[..., 0], patch[..., 2], atol=0.02)  # grey, no outline inside
    return float(np.median(patch[..., 0]))


def test_qc_png_ct_uses_the_abdominal_hu_window() -> None:
    volume, mask = _abdomen(body=40.0, liver=60.0, outside=-3024.0)  # scanner padding around the body
    low, high = PreprocessConfig().ct_window
    assert display_window(volume[:, :, 0], "CT") == (low, high)
    grey = _liver_grey(qc_png(volume, mask, title="ct", modality="ct"))
    assert grey == pytest.approx((60.0 - low) / (high - low), abs=0.05)  # mid-grey (0.55)
    assert _liver_grey(qc_png(volume, mask, title="ct")) > 0.95  # the slice's percentiles: saturated


@pytest.mark.parametrize("modality", ["mr", "MR-T2", "us"])
def test_mr_and_us_window_comes_from_the_body_only(modality: str) -> None:
    volume, mask = _abdomen(body=400.0, liver=250.0, outside=0.0)
    image = volume[:, :, 0]
    body = image > 100
    image[body] += np.broadcast_to(np.linspace(0, 400, image.shape[1]), image.shape)[body]  # a gradient in the body
    assert body.mean() < 0.55  # the zero background is a large part of the slice
    expected = (np.percentile(image, 1), np.percentile(image[body], 99))  # black background, top from the body
    assert display_window(image, modality) == pytest.approx(expected, rel=1e-6)
    assert display_window(image)[1] < expected[1]  # without a modality, the background pulls the top down
    assert 0.05 < _liver_grey(qc_png(volume, mask, title="mr", modality=modality)) < 0.75  # grey, not saturated


def test_display_window_constant_empty_and_unknown() -> None:
    assert display_window(np.zeros((4, 4)), "mr") == (0.0, 1.0)
    assert display_window(np.full((3, 3), np.nan)) == (0.0, 1.0)
    with pytest.raises(InputError, match="unknown modality"):
        qc_png(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)), title="x", modality="pet")


def test_qc_png_of_a_real_ct(tmp_path) -> None:
    """The real CT with its liver mask (canonical orientation) renders with a mid-grey liver."""
    nib = pytest.importorskip("nibabel")
    root = "/work/shared/realdata"
    try:
        volume = np.asarray(nib.as_closest_canonical(nib.load(f"{root}/ct_abdomen_3mm.nii.gz")).dataobj)
        mask = np.asarray(nib.as_closest_canonical(nib.load(f"{root}/ct_abdomen_3mm_liver.nii.gz")).dataobj) > 0
    except FileNotFoundError:
        pytest.skip("real scans not available")
    png = qc_png(volume, mask, title="real ct", modality="ct")
    (tmp_path / "qc.png").write_bytes(png)
    assert 0.35 < _liver_grey((tmp_path / "qc.png").read_bytes()) < 0.75

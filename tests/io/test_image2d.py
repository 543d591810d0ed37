"""PNG/JPEG files as 2-D volumes: layout and affine of the DICOM loader, grey values, spacing, refusals."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livercad.errors import InputError
from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_synth import write_single_frame
from livercad.io.image2d import BT601_LUMA, load_image2d, planar_affine
from livercad.io.nifti import load_volume, save_mask


def _png(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("spacing", [(0.3, 0.2), None])
def test_png_equals_the_same_frame_read_from_dicom(tmp_path: Path, spacing: tuple[float, float] | None) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (7, 9), dtype=np.uint8)
    vol = load_image2d(_png(tmp_path / "us.png", frame), spacing=spacing)
    ps = None if spacing is None else (spacing[1], spacing[0])  # DICOM PixelSpacing is (row, column)
    ref = load_dicom_series(write_single_frame(frame, tmp_path / "us.dcm", pixel_spacing=ps))
    assert vol.shape == ref.shape == (9, 7, 1) and vol.original_shape == (9, 7, 1)
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine)
    assert vol.spacing == pytest.approx(ref.spacing) and vol.data.dtype == np.float32
    assert vol.header.spacing_known is (spacing is not None) is ref.header.spacing_known
    assert vol.header.as_dict()["spacing_source"] == ("given" if spacing else "unknown")
    assert vol.header.modality_family is None and vol.header.format == "PNG"


def test_pixel_layout_and_planar_affine(tmp_path: Path) -> None:
    frame = np.arange(12, dtype=np.uint8).reshape(3, 4)  # 3 rows, 4 columns
    vol = load_image2d(_png(tmp_path / "a.png", frame), spacing=(0.5, 2.0))
    assert vol.data[0, 2, 0] == frame[0, 0]  # top-left pixel: column 0, the last j (rows are bottom-up)
    assert vol.data[3, 0, 0] == frame[2, 3]
    np.testing.assert_allclose(vol.affine, planar_affine(4, 3, (0.5, 2.0)))
    np.testing.assert_allclose(vol.affine @ [0, 2, 0, 1], [0, 0, 0, 1])  # top-left pixel at the origin


def test_sixteen_bit_png_keeps_its_values(tmp_path: Path) -> None:
    frame = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    vol = load_image2d(_png(tmp_path / "a.png", frame))
    assert sorted(vol.data.ravel().tolist()) == [0.0, 1000.0, 40000.0, 65535.0]


def test_rgb_jpeg_becomes_luminance_and_equal_channels_stay(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    vol = load_image2d(path)
    decoded = np.asarray(Image.open(path).convert("RGB")).astype(np.float64) @ BT601_LUMA
    np.testing.assert_allclose(vol.data[:, :, 0], decoded[::-1].T, rtol=1e-6)
    assert vol.header.colour == "luminance" and vol.header.format == "JPEG" and vol.header.mode == "RGB"
    grey3 = np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4)[..., None], 3, axis=2)
    vol3 = load_image2d(_png(tmp_path / "g.png", grey3))
    assert vol3.header.colour == "equal-channels"
    np.testing.assert_array_equal(vol3.data[:, :, 0], grey3[::-1, :, 0].T)


def test_alpha_and_palette_images(tmp_path: Path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 90, 0  # fully transparent grey: alpha is dropped
    assert load_image2d(_png(tmp_path / "a.png", rgba)).data.max() == 90
    pal = Image.fromarray(np.arange(20, dtype=np.uint8).reshape(4, 5)).convert("P")
    pal.save(tmp_path / "p.png")
    vol = load_image2d(tmp_path / "p.png")
    assert vol.header.mode == "P" and vol.shape == (5, 4, 1)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(np.zeros((6, 10), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    img.save(tmp_path / "r.jpg", exif=exif)
    vol = load_image2d(tmp_path / "r.jpg")
    assert vol.shape == (6, 10, 1) and vol.header.exif_rotated  # shown as 10 rows x 6 columns


def test_a_mask_on_a_png_volume_is_a_nifti_of_its_grid(tmp_path: Path) -> None:
    vol = load_image2d(_png(tmp_path / "a.png", np.zeros((5, 8), np.uint8)), spacing=(0.4, 0.6))
    mask = np.zeros(vol.shape, np.uint8)
    mask[2:5, 1:3] = 1
    back = load_volume(save_mask(mask, vol, tmp_path / "m.nii.gz"))
    assert back.original_shape == (8, 5, 1)
    np.testing.assert_array_equal(back.data, mask)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)


def _truncated_png(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue()[:200])
    return path


def _animated_png(path: Path) -> Path:
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("hello, not an image")
    return path


def _gif(path: Path) -> Path:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path, "GIF")
    return path


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p, "file not found"),
    (_empty, "file is empty"),
    (_text, "not a PNG or JPEG image"),
    (_truncated_png, "truncated or corrupt image"),
    (_animated_png, "animated PNG with 2 frames"),
    (_gif, "a GIF image; expected PNG or JPEG"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path: Path, make: Callable[[Path], Path],
                                                       reason: str) -> None:
    path = make(tmp_path / "bad.png")
    with pytest.raises(InputError) as info:
        load_image2d(path)
    text = str(info.value)
    assert text.startswith(str(path)) and reason in text and "\n" not in text, text


@pytest.mark.parametrize("spacing", [(0.0, 1.0), (1.0,), (1.0, float("nan")), ("a", 1)])
def test_bad_spacing_is_refused(tmp_path: Path, spacing: tuple) -> None:
    with pytest.raises(ValueError, match="spacing"):
        load_image2d(_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8)), spacing=spacing)

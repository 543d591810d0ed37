"""Tests of livercad.io.channels (and the 4-D reader of livercad.io.nifti): a case's co-registered images.

References are nibabel's own writer and reader and the arrays written.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from livercad.errors import InputError
from livercad.io.channels import load_images
from livercad.io.image import load_image
from livercad.io.manifest import ManifestRow, read_manifest
from livercad.io.nifti import load_channels, load_volume

AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])
NAMES = ["image", "image_arterial", "image_noncontrast"]


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def _arrays(n: int, shape: tuple[int, ...] = (6, 5, 4)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(10 * k, 1, shape).astype(np.float32) for k in range(n)]


def _row(tmp_path: Path, arrays: list[np.ndarray], names: list[str] = NAMES) -> ManifestRow:
    paths = [_nifti(tmp_path / f"{name}.nii.gz", a) for name, a in zip(names, arrays, strict=True)]
    return ManifestRow("c1", "c1", paths[0], extra={n: str(p) for n, p in zip(names[1:], paths[1:], strict=True)})


def test_the_named_columns_become_channels_in_the_model_order(tmp_path: Path) -> None:
    arrays = _arrays(3)
    row = _row(tmp_path, arrays)
    order = ["image", "image_noncontrast", "image_arterial"]  # not the column order of the row
    vol = load_images(row, order, load_image)
    np.testing.assert_array_equal(vol.data, arrays[0])
    assert len(vol.channels) == 2
    np.testing.assert_array_equal(vol.channels[0], arrays[2])
    np.testing.assert_array_equal(vol.channels[1], arrays[1])
    assert vol.path == row.image and np.allclose(vol.affine, AFFINE)


def test_one_image_reads_the_image_alone(tmp_path: Path) -> None:
    row = _row(tmp_path, _arrays(3))
    vol = load_images(row, ["image"], load_image)
    assert vol.channels == () and np.array_equal(vol.data, load_volume(row.image).data)


def test_a_missing_image_is_one_line_naming_the_case_and_column(tmp_path: Path) -> None:
    row = _row(tmp_path, _arrays(2), NAMES[:2])
    with pytest.raises(InputError) as info:
        load_images(row, NAMES, load_image)
    text = str(info.value)
    assert "\n" not in text and str(row.image) in text and "'c1'" in text and "'image_noncontrast'" in text


@pytest.mark.parametrize("bad", ["shape", "affine"])
def test_images_off_the_grid_are_refused_naming_both_files(tmp_path: Path, bad: str) -> None:
    arrays = _arrays(2)
    row = _row(tmp_path, arrays, NAMES[:2])
    other = Path(row.extra["image_arterial"])
    if bad == "shape":
        _nifti(other, arrays[1][:, :, :3])
    else:
        shifted = AFFINE.copy()
        shifted[0, 3] += 0.5
        _nifti(other, arrays[1], shifted)
    with pytest.raises(InputError) as info:
        load_images(row, NAMES[:2], load_image)
    text = str(info.value)
    assert "\n" not in text and str(other) in text and str(row.image) in text
    assert ("shape" in text) if bad == "shape" else ("affine differs" in text and "0.5" in text)


def test_a_4d_nifti_holds_the_images_along_its_4th_axis_with_the_flag(tmp_path: Path) -> None:
    arrays = _arrays(3)
    path = _nifti(tmp_path / "stack.nii.gz", np.stack(arrays, axis=-1))
    row = ManifestRow("c4", "c4", path)
    vol = load_images(row, NAMES, load_image, channels_axis=True)
    assert vol.shape == (6, 5, 4) and vol.original_shape == (6, 5, 4)
    for got, want in zip((vol.data, *vol.channels), arrays, strict=True):
        np.testing.assert_array_equal(got, want)
    ref = nib.load(path)
    np.testing.assert_allclose(vol.affine, ref.affine)
    np.testing.assert_array_equal(vol.channels[1], np.asarray(ref.dataobj)[..., 2])
    with pytest.raises(InputError, match=r"3 channel\(s\) along the 4th axis, the model takes 2 image"):
        load_images(row, NAMES[:2], load_image, channels_axis=True)
    with pytest.raises(InputError, match="4-D shape .*channels_axis"):  # without the flag: refused, with a hint
        load_images(row, ["image"], load_image)


def test_load_channels_of_a_3d_file_is_the_volume(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "a.nii.gz", _arrays(1)[0])
    (only,) = load_channels(path)
    ref = load_volume(path)
    assert only.shape == ref.shape and only.original_shape == ref.original_shape
    np.testing.assert_array_equal(only.data, ref.data)


def test_manifest_resolves_and_checks_image_columns(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for name in ("a.nii.gz", "a_art.nii.gz"):
        (tmp_path / "img" / name).write_bytes(b"x")
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,image,image_arterial,image_noncontrast,site\n"
                        "a,img/a.nii.gz,img/a_art.nii.gz,,img/not_a_path\n", encoding="utf-8")
    (row,) = read_manifest(manifest)
    assert row.extra["image_arterial"] == str(tmp_path / "img" / "a_art.nii.gz")
    assert row.extra["image_noncontrast"] == "" and row.extra["site"] == "img/not_a_path"
    manifest.write_text("case_id,image,image_arterial\na,img/a.nii.gz,img/missing.nii.gz\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 2: image_arterial file not found"):
        read_manifest(manifest)

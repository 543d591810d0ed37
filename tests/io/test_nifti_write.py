"""Tests of livercad.io.nifti_write: masks and volumes written on the exact input grid, atomically.

References are independent of the code under test: nibabel's own reader (``nib.load``) and writer,
the real files shipped in nibabel's test data, the standard library's gzip, and hand-computed values.
"""

from __future__ import annotations

import gzip
import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import livercad.io
from livercad.errors import InputError
from livercad.io import nifti, nifti_write
from livercad.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from livercad.io.nifti import load_mask, load_volume
from livercad.io.nifti_write import save_mask, save_volume
from livercad.types import Volume

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
REAL_3D = ["anatomical.nii", "reoriented_anat_moved.nii", "standard.nii.gz"]


def _rot(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(rot: np.ndarray, spacing: tuple[float, float, float], origin=(10.0, -20.0, 30.0)) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


SPACING = (0.7, 0.8, 3.0)
ORIENTATIONS = {
    "RAS": (_affine(np.eye(3), SPACING), ("R", "A", "S")),
    "LPS": (_affine(np.diag([-1.0, -1.0, 1.0]), SPACING), ("L", "P", "S")),
    "PIR": (_affine(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), SPACING), ("P", "I", "R")),
    "oblique": (_affine(_rot(0, 25) @ _rot(2, 15), SPACING), None),
}


def _write(path: Path, data: np.ndarray, affine: np.ndarray, klass=nib.Nifti1Image,
           slope: float | None = None, inter: float | None = None) -> Path:
    """Write with nibabel itself (qform and sform both coded) - the reference writer."""
    img = klass(data, affine, dtype=data.dtype)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, path)
    return path


def _assert_same_grid(written: Path, reference: Path) -> None:
    a, b = nib.load(reference), nib.load(written)
    assert type(a.header) is type(b.header)
    assert b.shape == a.shape
    np.testing.assert_array_equal(b.affine, a.affine)
    for coded in ("get_qform", "get_sform"):
        code_a, code_b = getattr(a.header, coded)(coded=True)[1], getattr(b.header, coded)(coded=True)[1]
        assert int(code_a) == int(code_b)
        np.testing.assert_array_equal(getattr(a.header, coded)(), getattr(b.header, coded)())
    np.testing.assert_array_equal(a.header.get_zooms(), b.header.get_zooms())


# ----------------------------------------------------------------------------- real files
@pytest.mark.parametrize("name", REAL_3D)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_real_file_roundtrip(name: str, suffix: str, tmp_path: Path) -> None:
    ref = nib.load(NIB_DATA / name)
    vol = load_volume(NIB_DATA / name)
    np.testing.assert_array_equal(vol.data, ref.get_fdata(dtype=np.float32))
    np.testing.assert_array_equal(vol.affine, ref.affine)
    assert repr(vol.data.dtype) == "dtype('float32')" and vol.affine.dtype == np.float64
    assert vol.original_shape == ref.shape and vol.spacing == tuple(float(z) for z in ref.header.get_zooms())
    mask = vol.data > np.median(vol.data)
    out = save_mask(mask, vol, tmp_path / f"mask{suffix}")
    _assert_same_grid(out, NIB_DATA / name)
    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), mask.astype(np.uint8))
    np.testing.assert_array_equal(load_mask(out, vol), mask)
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".nii.gz")


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_orientation_roundtrip(orientation: str, klass, suffix: str, tmp_path: Path) -> None:
    affine, codes = ORIENTATIONS[orientation]
    if codes is not None:
        assert nib.aff2axcodes(affine) == codes
    labels = np.random.default_rng(3).integers(0, 4, (7, 6, 5)).astype(np.int16)
    src = _write(tmp_path / f"img{suffix}", labels, affine, klass)
    vol = load_volume(src)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    out = save_mask(labels.astype(np.uint8), vol, tmp_path / f"mask{suffix}")
    _assert_same_grid(out, src)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), labels)
    again = load_volume(out)
    np.testing.assert_array_equal(again.affine, vol.affine)
    np.testing.assert_array_equal(load_mask(out, vol, liver_labels=[1, 3]), np.isin(labels, [1, 3]))


def test_nifti2_3d_written_as_nifti2(tmp_path: Path) -> None:
    src = _write(tmp_path / "n2.nii.gz", np.ones((4, 3, 2), np.float32), ORIENTATIONS["LPS"][0], nib.Nifti2Image)
    vol = load_volume(src)
    assert isinstance(vol.header, nib.Nifti2Header)
    out = save_mask(np.ones(vol.shape, bool), vol, tmp_path / "m.nii")
    assert int.from_bytes(out.read_bytes()[:4], "little") == 540
    _assert_same_grid(out, src)


def test_2d_file_becomes_one_slice(tmp_path: Path) -> None:
    affine = _affine(np.eye(3), (0.3, 0.4, 1.0))
    img = nib.Nifti1Image(np.arange(12, dtype=np.uint8).reshape(4, 3), affine)
    img.header["pixdim"][3] = 0.0  # 2-D tools often leave the third voxel size unset
    nib.save(img, tmp_path / "us.nii.gz")
    vol = load_volume(tmp_path / "us.nii.gz")
    assert vol.shape == (4, 3, 1) and vol.original_shape == (4, 3)
    assert vol.spacing[2] == 1.0 and abs(np.linalg.det(vol.affine[:3, :3])) > 0
    np.testing.assert_array_equal(vol.data[:, :, 0], np.arange(12).reshape(4, 3))
    out = save_mask(vol.data > 5, vol, tmp_path / "m.nii.gz")
    _assert_same_grid(out, tmp_path / "us.nii.gz")
    assert nib.load(out).shape == (4, 3)



def test_single_slice_3d_without_third_spacing(tmp_path: Path) -> None:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 3, 1))
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.diag([0.5, 0.6, 0.0, 1.0]), code=1)  # third column zero, pixdim[3] zero
    hdr["pixdim"][1:4] = (0.5, 0.6, 0.0)
    nib.save(nib.Nifti1Image(np.ones((4, 3, 1), np.int16), None, header=hdr), tmp_path / "frame.nii")
    vol = load_volume(tmp_path / "frame.nii")
    assert vol.spacing == pytest.approx((0.5, 0.6, 1.0))
    np.testing.assert_allclose(vol.affine, np.diag([0.5, 0.6, 1.0, 1.0]))
    out = save_mask(np.ones(vol.shape, bool), vol, tmp_path / "m.nii")
    _assert_same_grid(out, tmp_path / "frame.nii")  # the stored (degenerate) sform is written back as is


def test_4d_with_trailing_one_is_squeezed(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(4, 3, 2, 1)
    src = _write(tmp_path / "t.nii", data, ORIENTATIONS["PIR"][0])
    vol = load_volume(src)
    assert vol.shape == (4, 3, 2) and vol.original_shape == (4, 3, 2, 1)
    np.testing.assert_array_equal(vol.data, data[..., 0])
    out = save_mask(vol.data % 2 == 0, vol, tmp_path / "m.nii.gz")
    _assert_same_grid(out, src)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj)[..., 0], (data[..., 0] % 2 == 0))


def test_save_volume_int16_and_defaults(tmp_path: Path) -> None:
    affine = ORIENTATIONS["oblique"][0]
    data = np.array([[[-1024.4, 55.6], [40000.0, -40000.0]]])
    out = save_volume(data, affine, tmp_path / "ct.nii.gz", dtype=np.int16)
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(img.dataobj), [[[-1024, 56], [32767, -32768]]])
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    again = save_volume(data, affine, tmp_path / "ct2.nii.gz", dtype=np.int16)
    assert again.read_bytes() == out.read_bytes()  # deterministic gzip (mtime 0)
    f32 = load_volume(save_volume(data[0], affine, tmp_path / "mr.nii"))
    assert f32.shape == (2, 2, 1)
    np.testing.assert_array_equal(f32.data[..., 0], data[0].astype(np.float32))


def test_save_volume_identity_affine_is_coded(tmp_path: Path) -> None:
    img = nib.load(save_volume(np.zeros((3, 2, 2)), np.eye(4), tmp_path / "eye.nii"))
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    np.testing.assert_array_equal(img.affine, np.eye(4))
    with pytest.raises(InputError, match="invertible"):
        save_volume(np.zeros((3, 2, 2)), np.diag([1.0, 1.0, 0.0, 1.0]), tmp_path / "bad.nii")


def test_save_volume_keeps_nifti2_header(tmp_path: Path) -> None:
    out = save_volume(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "a.nii", header=nib.Nifti2Header())
    assert isinstance(nib.load(out), nib.Nifti2Image)



# ----------------------------------------------------------------------------- mask writing
def test_save_mask_errors_name_the_output_and_write_nothing(tmp_path: Path) -> None:
    img = load_volume(_write(tmp_path / "img.nii", np.zeros((4, 3, 2), np.int16), np.eye(4)))
    with pytest.raises(InputError, match=r"out\.nii\.gz: mask shape \(4, 3\) differs"):
        save_mask(np.zeros((4, 3), bool), img, tmp_path / "out.nii.gz")
    with pytest.raises(InputError, match="0..255"):
        save_mask(np.full((4, 3, 2), 300), img, tmp_path / "out.nii.gz")
    with pytest.raises(InputError, match=r"\.nii or \.nii\.gz"):
        save_mask(np.zeros((4, 3, 2), bool), img, tmp_path / "out.png")
    assert not list(tmp_path.glob("out*"))


def test_mask_follows_a_changed_affine_keeping_codes(tmp_path: Path) -> None:
    src = _write(tmp_path / "img.nii", np.zeros((3, 4, 2), np.int16), ORIENTATIONS["RAS"][0])
    vol = load_volume(src)
    moved = vol.affine.copy()
    moved[:3, 3] += (5.0, -2.0, 1.5)
    out = save_mask(np.zeros(vol.shape, bool), Volume(**{**vol.__dict__, "affine": moved}), tmp_path / "m.nii")
    hdr = nib.load(out).header
    np.testing.assert_allclose(hdr.get_sform(), moved, atol=1e-5)
    np.testing.assert_allclose(hdr.get_qform(), moved, atol=1e-5)
    assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 2)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int64, np.float32])
def test_mask_memory_order_and_dtype_do_not_change_the_file(dtype, tmp_path: Path) -> None:
    vol = load_volume(_write(tmp_path / "img.nii.gz", np.zeros((6, 5, 4), np.int16), ORIENTATIONS["PIR"][0]))
    labels = np.random.default_rng(7).integers(0, 3, vol.shape)
    c_order = save_mask(np.ascontiguousarray(labels.astype(dtype)), vol, tmp_path / "c.nii.gz")
    f_order = save_mask(np.asfortranarray(labels.astype(dtype)), vol, tmp_path / "f.nii.gz")
    assert c_order.read_bytes() == f_order.read_bytes()
    np.testing.assert_array_equal(np.asarray(nib.load(c_order).dataobj), labels.astype(dtype).astype(np.uint8))


def test_mask_for_in_memory_volume(tmp_path: Path) -> None:
    affine = ORIENTATIONS["LPS"][0]
    vol = Volume(data=np.zeros((3, 4, 2), np.float32), affine=affine, header=None, spacing=SPACING)
    out = save_mask(np.ones((3, 4, 2), bool), vol, tmp_path / "m.nii.gz")
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-5)
    assert nib.load(out).shape == (3, 4, 2)




# ----------------------------------------------------------------------------- gzip and re-exports
@pytest.mark.parametrize("use_isal", [True, False])
def test_gzip_payload_equals_the_uncompressed_file(use_isal: bool, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not use_isal:
        monkeypatch.setattr(nifti_write, "_isal_zlib", None)  # the standard-library fallback
    data = np.random.default_rng(5).normal(0, 100, (9, 7, 4))
    plain = save_volume(data, ORIENTATIONS["oblique"][0], tmp_path / "v.nii", dtype=np.int16)
    packed = save_volume(data, ORIENTATIONS["oblique"][0], tmp_path / "v.nii.gz", dtype=np.int16)
    raw = packed.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == bytes(4)  # gzip magic, mtime 0 (reproducible bytes)
    assert gzip.decompress(raw) == plain.read_bytes()
    np.testing.assert_array_equal(np.asarray(nib.load(packed).dataobj), np.clip(np.rint(data), -32768, 32767))


def test_public_names_stay_importable_from_nifti_and_io() -> None:
    assert nifti.save_mask is nifti_write.save_mask and nifti.save_volume is nifti_write.save_volume
    assert livercad.io.save_mask is save_mask and livercad.io.save_volume is save_volume
    assert livercad.io.load_volume is nifti.load_volume and livercad.io.load_mask is nifti.load_mask
    assert set(nifti.__all__) == {"load_channels", "load_volume", "load_mask", "save_mask", "save_volume"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        livercad.io.nope  # noqa: B018


def test_importing_livercad_io_does_not_import_nibabel() -> None:
    code = "import sys, livercad.io, livercad.io.atomic; print('nibabel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- atomic writes
def test_atomic_write_replaces_and_keeps_suffixes(tmp_path: Path) -> None:
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_text("new")

    (tmp_path / "a.nii.gz").write_text("old")
    assert atomic_write(tmp_path / "a.nii.gz", writer).read_text() == "new"
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".a.tmp") and seen[0].name.endswith(".nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]
    assert atomic_write_text(tmp_path / "sub" / "t.csv", "x\n").read_bytes() == b"x\n"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "sub" / "t.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_error_leaves_no_temp_and_no_partial_file(tmp_path: Path) -> None:
    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "new.nii", failing)
    assert list(tmp_path.iterdir()) == []
    atomic_write_bytes(tmp_path / "old.nii", b"complete")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "old.nii", failing)
    assert [p.name for p in tmp_path.iterdir()] == ["old.nii"]
    assert (tmp_path / "old.nii").read_bytes() == b"complete"

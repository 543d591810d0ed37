"""Tests of livercad.io.nifti (and the atomic writes it relies on).

References are independent of the code under test: nibabel's own reader (``nib.load``), the real
files shipped in nibabel's test data, and hand-computed values.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livercad.errors import InputError
from livercad.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from livercad.io.nifti import load_mask, load_volume, save_mask, save_volume
from livercad.types import Volume

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
REAL_3D = ["anatomical.nii", "reoriented_anat_moved.nii", "standard.nii.gz"]
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


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


def _check_error(path: Path, match: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_volume(path)
    text = str(info.value)
    assert path.name in text and match in text and "\n" not in text
    return info.value


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


@pytest.mark.parametrize("name, shape", [("example4d.nii.gz", "(128, 96, 24, 2)"),
                                         ("example_nifti2.nii.gz", "(32, 20, 12, 2)")])
def test_real_4d_files_give_one_line_error(name: str, shape: str) -> None:
    err = _check_error(NIB_DATA / name, f"expected a 2-D or 3-D image, got 4-D shape {shape}")
    assert err.path == str(NIB_DATA / name)


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


def test_2d_file_keeps_stored_third_spacing(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 3), np.float32), np.diag([0.3, 0.4, 2.5, 1.0]))
    nib.save(img, tmp_path / "f.nii")
    assert load_volume(tmp_path / "f.nii").spacing == pytest.approx((0.3, 0.4, 2.5))


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


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_scl_slope_inter_applied(dtype, tmp_path: Path) -> None:
    raw = np.array([[[0, 1], [2, 3]], [[10, 20], [30, 40]]], dtype=dtype)
    src = _write(tmp_path / "s.nii", raw, np.eye(4), slope=2.5, inter=-1024.0)
    vol = load_volume(src)
    np.testing.assert_array_equal(vol.data, raw.astype(np.float64) * 2.5 - 1024.0)  # exact in float32
    np.testing.assert_array_equal(vol.data, nib.load(src).get_fdata(dtype=np.float32))
    out = save_mask(vol.data > -1000, vol, tmp_path / "m.nii")
    hdr = nib.load(out).header
    assert hdr.get_slope_inter() in ((None, None), (1.0, 0.0))
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), (raw * 2.5 - 1024 > -1000).astype(np.uint8))


def test_non_trivial_slope_matches_nibabel(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(-3000, 3000, (9, 8, 7)).astype(np.int16)
    src = _write(tmp_path / "s.nii.gz", raw, np.eye(4), slope=0.1, inter=0.3)
    np.testing.assert_array_equal(load_volume(src).data, nib.load(src).get_fdata(dtype=np.float32))


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


# ----------------------------------------------------------------------------- errors
def _valid_bytes(shape=(4, 3, 2), dtype=np.int16, klass=nib.Nifti1Image) -> bytes:
    data = np.arange(math.prod(shape), dtype=dtype).reshape(shape)
    img = klass(data, np.diag([0.8, 0.9, 3.0, 1.0]), dtype=dtype)
    img.header.set_qform(img.affine, code=1)
    return img.to_bytes()


def _with_header(**fields) -> bytes:
    hdr = nib.Nifti1Header.from_header(nib.Nifti1Image.from_bytes(_valid_bytes()).header)
    raw = bytearray(_valid_bytes())
    struct = np.frombuffer(raw, dtype=hdr.structarr.dtype, count=1)
    for name, (index, value) in fields.items():
        if index is None:
            struct[name][0] = value
        else:
            struct[name][0][index] = value
    return bytes(raw)


def _nan_image() -> bytes:
    data = np.ones((3, 3, 2), np.float32)
    data[0, 0, 0], data[1, 2, 1] = np.nan, np.nan
    return nib.Nifti1Image(data, np.eye(4)).to_bytes()


def _inf_image() -> bytes:
    data = np.ones((3, 3, 2), np.float64)
    data[2, 2, 1] = np.inf
    return nib.Nifti1Image(data, np.eye(4), dtype=np.float64).to_bytes()


def _crc_error() -> bytes:
    gz = bytearray(gzip.compress(_valid_bytes()))
    gz[-8] ^= 0xFF  # first byte of the CRC32 trailer
    return bytes(gz)


def _singular_sform() -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((3, 3, 2))
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=2)
    img = nib.Nifti1Image(np.ones((3, 3, 2), np.float32), None, header=hdr)
    assert img.header.get_best_affine()[2, 2] == 0
    return img.to_bytes()


ERROR_CASES = {
    "empty.nii.gz": (lambda: b"", "empty"),
    "truncated.nii.gz": (lambda: gzip.compress(_valid_bytes())[:-20], "truncated or corrupt gzip"),
    "crc.nii.gz": (_crc_error, "CRC"),
    "random.nii.gz": (lambda: np.random.default_rng(1).bytes(600), "not a NIfTI file"),
    "random_gz.nii.gz": (lambda: b"\x1f\x8b" + np.random.default_rng(1).bytes(600), "corrupt gzip"),
    "png.nii": (lambda: PNG_BYTES, "PNG"),
    "short.nii": (lambda: _valid_bytes()[:-5], "truncated"),
    "header_only.nii": (lambda: _valid_bytes()[:200], "not a NIfTI file"),
    "true4d.nii": (lambda: _valid_bytes((4, 3, 2, 2)), "got 4-D shape (4, 3, 2, 2)"),
    "zero.nii": (lambda: _with_header(dim=(2, 0)), "zero-sized"),
    "dims_too_big.nii": (lambda: _with_header(dim=(1, 400)), "truncated"),
    "nan.nii": (_nan_image, "contains 2 NaN/Inf voxels"),
    "inf.nii.gz": (lambda: gzip.compress(_inf_image()), "contains 1 NaN/Inf voxels"),
    "overflow.nii": (lambda: _with_header(scl_slope=(None, 1e38)), "NaN/Inf voxels"),
    "pixdim_zero.nii": (lambda: _with_header(pixdim=(2, 0.0)), "voxel size"),
    "pixdim_negative.nii": (lambda: _with_header(pixdim=(3, -2.0)), "voxel size"),
    "pixdim_nan.nii": (lambda: _with_header(pixdim=(1, np.nan)), "voxel size"),
    "singular.nii": (_singular_sform, "not invertible"),
    "pair.nii": (lambda: _with_header(magic=(None, b"ni1")), "pair"),
    "offset_zero.nii": (lambda: _with_header(vox_offset=(None, 0.0)), "offset 0 lies inside the header"),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_bad_file_gives_one_line_input_error(name: str, tmp_path: Path) -> None:
    make, match = ERROR_CASES[name]
    (tmp_path / name).write_bytes(make())
    _check_error(tmp_path / name, match)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _check_error(tmp_path / "nope.nii.gz", "file not found")
    (tmp_path / "dir.nii").mkdir()
    _check_error(tmp_path / "dir.nii", "not a regular file")


def test_mask_mismatch_errors_name_the_mask(tmp_path: Path) -> None:
    img = load_volume(_write(tmp_path / "img.nii", np.zeros((4, 3, 2), np.int16), np.eye(4)))
    _write(tmp_path / "small.nii", np.zeros((4, 3, 1), np.uint8), np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    _write(tmp_path / "moved.nii.gz", np.zeros((4, 3, 2), np.uint8), shifted)
    with pytest.raises(InputError, match=r"small\.nii: mask shape \(4, 3, 1\) differs from image shape "
                                         r"\(4, 3, 2\) of .*img\.nii"):
        load_mask(tmp_path / "small.nii", img)
    with pytest.raises(InputError, match=r"moved\.nii\.gz: mask affine differs .*img\.nii"):
        load_mask(tmp_path / "moved.nii.gz", img)
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


# ----------------------------------------------------------------------------- properties
HEADER_FIELDS = ["dim", "pixdim", "vox_offset", "scl_slope", "scl_inter", "datatype", "bitpix", "qform_code",
                 "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "srow_x", "srow_y", "srow_z",
                 "sizeof_hdr", "magic", "intent_code", "slice_start", "xyzt_units", "extents"]
SPECIAL = st.sampled_from([0, 1, -1, 2, 3, 4, 7, 8, 16, 64, 255, 348, 540, 32767, -32768, 2**31 - 1])
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), SPECIAL.map(float))


def _field_value(draw, field: np.dtype):
    if field.kind in "S":
        return draw(st.binary(max_size=field.itemsize))
    if field.kind == "f":
        return draw(FLOATS)
    info = np.iinfo(field)
    return draw(st.one_of(SPECIAL, st.integers(info.min, info.max)).filter(lambda v: info.min <= v <= info.max))


@st.composite
def header_edits(draw, dtype: np.dtype):
    edits = []
    names = [name for name in HEADER_FIELDS if name in dtype.names]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
        base, shape = dtype[name].base, dtype[name].shape
        index = draw(st.integers(0, shape[0] - 1)) if shape else None
        edits.append((name, index, _field_value(draw, base)))
    return edits


def _assert_volume_or_input_error(path: Path) -> None:
    try:
        vol = load_volume(path)
    except InputError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        return
    assert vol.data.ndim == 3 and vol.data.dtype == np.float32 and np.all(np.isfinite(vol.data))
    assert math.prod(vol.original_shape) == vol.data.size
    assert np.all(np.isfinite(vol.affine)) and abs(np.linalg.det(vol.affine[:3, :3])) > 0
    assert all(s > 0 and math.isfinite(s) for s in vol.spacing)


FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


N1_DTYPE, N2_DTYPE = nib.Nifti1Header().structarr.dtype, nib.Nifti2Header().structarr.dtype


@FUZZ
@given(edits=st.one_of(header_edits(N1_DTYPE).map(lambda e: (1, e)), header_edits(N2_DTYPE).map(lambda e: (2, e))),
       gz=st.booleans())
def test_random_header_fields_never_escape(edits, gz: bool, tmp_path: Path) -> None:
    version, edits = edits
    raw = bytearray(_valid_bytes(klass=nib.Nifti2Image if version == 2 else nib.Nifti1Image))
    struct = np.frombuffer(raw, dtype=N2_DTYPE if version == 2 else N1_DTYPE, count=1)
    with np.errstate(all="ignore"):
        for name, index, value in edits:
            if index is None:
                struct[name][0] = value
            else:
                struct[name][0][index] = value
    path = tmp_path / ("h.nii.gz" if gz else "h.nii")
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
    _assert_volume_or_input_error(path)


@FUZZ
@given(data=st.data(), gz=st.booleans(), nifti2=st.booleans())
def test_random_byte_corruption_never_escapes(data, gz: bool, nifti2: bool, tmp_path: Path) -> None:
    raw = _valid_bytes(klass=nib.Nifti2Image if nifti2 else nib.Nifti1Image)
    blob = bytearray(gzip.compress(raw, mtime=0) if gz else raw)
    for _ in range(data.draw(st.integers(1, 6))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    path = tmp_path / ("c.nii.gz" if gz else "c.nii")
    path.write_bytes(bytes(blob[:cut]))
    _assert_volume_or_input_error(path)


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

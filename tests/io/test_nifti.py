"""Tests of livercad.io.nifti: reading NIfTI files and the one-line errors for bad ones.

References are independent of the code under test: nibabel's own reader (``nib.load``), the real
files shipped in nibabel's test data, and hand-computed values. Writing (``save_mask``/``save_volume``,
atomic writes, geometry round trips) is tested in ``test_nifti_write.py``.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livercad.errors import InputError
from livercad.io.nifti import load_mask, load_volume, save_mask

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


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


def _check_error(path: Path, match: str) -> InputError:
    with pytest.raises(InputError) as info:
        load_volume(path)
    text = str(info.value)
    assert path.name in text and match in text and "\n" not in text
    return info.value


# ----------------------------------------------------------------------------- real files
@pytest.mark.parametrize("name, shape", [("example4d.nii.gz", "(128, 96, 24, 2)"),
                                         ("example_nifti2.nii.gz", "(32, 20, 12, 2)")])
def test_real_4d_files_give_one_line_error(name: str, shape: str) -> None:
    err = _check_error(NIB_DATA / name, f"expected a 2-D or 3-D image, got 4-D shape {shape}")
    assert err.path == str(NIB_DATA / name)


# ----------------------------------------------------------------------------- layouts and scaling
def test_2d_file_keeps_stored_third_spacing(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((4, 3), np.float32), np.diag([0.3, 0.4, 2.5, 1.0]))
    nib.save(img, tmp_path / "f.nii")
    assert load_volume(tmp_path / "f.nii").spacing == pytest.approx((0.3, 0.4, 2.5))


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

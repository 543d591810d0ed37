"""Geometry of DICOM series read by livercad.io.dicom: every voxel's world coordinate against DICOM itself.

The reference is independent of the reader: each file's ImagePositionPatient, ImageOrientationPatient and
PixelSpacing read back with pydicom and put through the formula of DICOM PS3.3 C.7.6.2.1.1, converted
LPS -> RAS; voxels are matched to file pixels by unique pixel values, so both the affine and the pixel
placement are checked. dcm2niix (pip package ``dcm2niix``, dev extra) is a second reference when installed.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_synth import write_series
from livercad.io.nifti import load_mask

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
DCM2NIIX = shutil.which("dcm2niix") or next((str(p) for p in [Path(sys.executable).parent / "dcm2niix"]
                                             if p.exists()), None)
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed (pip install dcm2niix)")
AXES = np.eye(3)


def dicom_world_ras(path: Path, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """RAS mm of pixels (row, col) of a file, straight from its header (PS3.3 C.7.6.2.1.1)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    ps = np.asarray(ds.PixelSpacing, float)
    lps = ipp[:, None] + iop[:3, None] * ps[1] * col[None] + iop[3:, None] * ps[0] * row[None]
    return lps * np.array([-1.0, -1.0, 1.0])[:, None]


def assert_world_matches(vol, files: list[Path], frames_shape: tuple[int, int, int], tol: float = 1e-3) -> None:
    """Every voxel holds the unique value of one file pixel, and sits where that pixel is in the world."""
    n, rows, cols = frames_shape
    ijk = np.indices(vol.shape).reshape(3, -1)
    values = vol.data[tuple(ijk)].astype(np.int64)
    assert sorted(values.tolist()) == list(range(n * rows * cols))  # every pixel exactly once
    slice_n, row, col = np.unravel_index(values, (n, rows, cols))
    got = vol.affine[:3, :3] @ ijk + vol.affine[:3, 3:4]
    expected = np.empty_like(got)
    for k in range(n):
        sel = slice_n == k
        expected[:, sel] = dicom_world_ras(files[k], row[sel], col[sel])
    assert np.max(np.abs(got - expected)) < tol


def _orientation(draw) -> tuple[np.ndarray, np.ndarray]:
    """A signed axis permutation (every axis order) or a random oblique rotation."""
    if draw(st.booleans()):
        a, b = draw(st.permutations(range(3)))[:2]
        sa, sb = draw(st.sampled_from([-1.0, 1.0])), draw(st.sampled_from([-1.0, 1.0]))
        return sa * AXES[a], sb * AXES[b]
    q = np.array(draw(st.lists(st.floats(-1, 1), min_size=4, max_size=4)))
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.2, -0.3, 0.4])
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return rot[:, 0], rot[:, 1]


@st.composite
def series_specs(draw, min_side: int = 1) -> dict:
    row_dir, col_dir = _orientation(draw)
    sign = draw(st.sampled_from([-1.0, 1.0]))
    return {
        "shape": (draw(st.integers(1, 5)), draw(st.integers(min_side, 6)), draw(st.integers(min_side, 6))),
        "row_dir": row_dir, "col_dir": col_dir,
        "origin": tuple(draw(st.floats(-300, 300)) for _ in range(3)),
        "pixel_spacing": (draw(st.floats(0.2, 3.0)), draw(st.floats(0.2, 3.0))),  # row != column spacing
        "slice_step": sign * draw(st.floats(0.5, 5.0)),
        "seed": draw(st.integers(0, 2**16)),  # shuffles file names and instance numbers
    }


def _write(spec: dict, folder: Path) -> tuple[list[Path], np.ndarray]:
    n, rows, cols = spec["shape"]
    frames = np.arange(n * rows * cols, dtype=np.uint16).reshape(n, rows, cols)
    files = write_series(frames, folder, modality="MR", **{k: v for k, v in spec.items() if k != "shape"})
    return files, frames


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=series_specs())
def test_every_voxel_is_where_dicom_puts_it(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files, frames = _write(spec, Path(tmp))
        vol = load_dicom_series(tmp)
        assert vol.shape == (spec["shape"][2], spec["shape"][1], spec["shape"][0])
        assert_world_matches(vol, files, frames.shape)
        assert vol.spacing[:2] == pytest.approx((spec["pixel_spacing"][1], spec["pixel_spacing"][0]))
        if spec["shape"][0] > 1:
            assert vol.spacing[2] == pytest.approx(abs(spec["slice_step"]), abs=1e-5)
        assert set(vol.header.files) == set(files)
        assert vol.header.sop_instance_uids == tuple(
            str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in vol.header.files)


@settings(max_examples=15, deadline=None)
@given(tilt_deg=st.floats(0.0, 0.09), spec=series_specs())
def test_tilt_below_the_limit_keeps_exact_world_coordinates(tilt_deg: float, spec: dict) -> None:
    normal = np.cross(spec["row_dir"], spec["col_dir"])
    direction = np.cos(np.radians(tilt_deg)) * normal + np.sin(np.radians(tilt_deg)) * spec["row_dir"]
    with tempfile.TemporaryDirectory() as tmp:
        files, frames = _write({**spec, "slice_dir": direction}, Path(tmp))
        assert_world_matches(load_dicom_series(tmp), files, frames.shape)


SIGNED_AXIS_PAIRS = [(sa * AXES[a], sb * AXES[b]) for a, b in itertools.permutations(range(3), 2)
                     for sa in (1.0, -1.0) for sb in (1.0, -1.0)]


@pytest.mark.parametrize("step", [2.5, -2.5])
def test_all_24_axis_orders(tmp_path: Path, step: float) -> None:
    """Every signed axis permutation of ImageOrientationPatient, against DICOM and (when installed) dcm2niix."""
    for n, (row_dir, col_dir) in enumerate(SIGNED_AXIS_PAIRS):
        spec = {"shape": (3, 4, 5), "row_dir": row_dir, "col_dir": col_dir, "origin": (-12.5, 40.0, 7.25),
                "pixel_spacing": (0.6, 0.9), "slice_step": step, "seed": n}
        files, frames = _write(spec, tmp_path / f"o{n}")
        vol = load_dicom_series(tmp_path / f"o{n}")
        assert_world_matches(vol, files, frames.shape)
        if DCM2NIIX is not None:
            (tmp_path / f"n{n}").mkdir()
            _assert_same_as_dcm2niix(vol, _dcm2niix(tmp_path / f"o{n}", tmp_path / f"n{n}"))


def test_real_multi_file_ct_series_from_pydicom() -> None:
    files = sorted(p for p in CT5N.iterdir())
    vol = load_dicom_series(CT5N)
    assert vol.shape == (16, 16, 5)
    assert vol.spacing == pytest.approx((0.488281, 0.488281, 2.5))
    for k, f in enumerate(vol.header.files):  # slice order: ascending along the normal (+z here)
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.data[:, :, k], hu[::-1, :].T)
        r, c = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
        world = dicom_world_ras(f, r.ravel(), c.ravel())
        ijk = np.stack([c.ravel(), 15 - r.ravel(), np.full(r.size, k)])
        assert np.max(np.abs(vol.affine[:3, :3] @ ijk + vol.affine[:3, 3:4] - world)) < 1e-3
    assert set(vol.header.files) == set(files)
    positions = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in vol.header.files]
    assert positions == sorted(positions)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_real_single_files_are_one_slice_series(name: str) -> None:
    path = Path(get_testdata_file(name, download=False))
    ds = pydicom.dcmread(path)
    vol = load_dicom_series(path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    assert vol.shape == (cols, rows, 1) and vol.path == path
    expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    np.testing.assert_array_equal(vol.data[:, :, 0], expected[::-1, :].T)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    ijk = np.stack([c.ravel(), rows - 1 - r.ravel(), np.zeros(r.size)])
    got = vol.affine[:3, :3] @ ijk + vol.affine[:3, 3:4]
    assert np.max(np.abs(got - dicom_world_ras(path, r.ravel(), c.ravel()))) < 1e-3
    assert vol.spacing[2] == pytest.approx(float(ds.SliceThickness))
    assert abs(np.linalg.det(vol.affine[:3, :3])) == pytest.approx(np.prod(vol.spacing), rel=1e-5)


def _dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "out", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=60)
    niftis = sorted(out.glob("*.nii"))
    assert len(niftis) == 1, niftis
    return nib.load(niftis[0])


def _assert_same_as_dcm2niix(vol, img: nib.Nifti1Image) -> None:
    data = np.asarray(img.get_fdata()).reshape(vol.shape)
    np.testing.assert_array_equal(data, vol.data)
    corners = np.array(np.meshgrid(*[[0, s - 1] for s in vol.shape], indexing="ij")).reshape(3, -1)
    ours = vol.affine[:3, :3] @ corners + vol.affine[:3, 3:4]
    theirs = img.affine[:3, :3] @ corners + img.affine[:3, 3:4]
    assert np.max(np.abs(ours - theirs)) < 1e-3


@needs_dcm2niix
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=series_specs(min_side=2))
def test_same_array_and_world_coordinates_as_dcm2niix(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _write(spec, Path(tmp) / "in")
        _assert_same_as_dcm2niix(load_dicom_series(Path(tmp) / "in"), _dcm2niix(Path(tmp) / "in", Path(tmp)))


@needs_dcm2niix
def test_real_series_same_as_dcm2niix_and_its_masks_fit(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    img = _dcm2niix(CT5N, tmp_path)
    _assert_same_as_dcm2niix(vol, img)
    labels = np.zeros(img.shape, np.uint8)
    labels[2:9, 3:7, 1:4] = 1
    nib.save(nib.Nifti1Image(labels, img.affine, img.header), tmp_path / "mask.nii.gz")
    mask = load_mask(tmp_path / "mask.nii.gz", vol)  # a mask drawn on dcm2niix's NIfTI fits the DICOM volume
    np.testing.assert_array_equal(mask, labels > 0)

"""DICOM-SEG output: the SEG read back with highdicom and with plain pydicom equals the mask voxel for voxel,
placed in world coordinates through each frame's PlanePositionSequence and referenced source image."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.pixels import unpack_bits

from livercad.errors import InputError
from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_seg import read_dicom_seg, write_dicom_seg
from livercad.io.dicom_synth import write_series, write_single_frame

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"


def mask_from_plain_pydicom(seg_path: Path, vol) -> np.ndarray:
    """Rebuild the mask on ``vol``'s grid from the SEG's frames and their plane positions (no highdicom)."""
    ds = pydicom.dcmread(seg_path)
    # 1-bit frames are packed back to back (a frame may start mid-byte); pydicom 3.0's pixel_array fails on
    # such multi-frame data (non-integer slice index), so the bits are unpacked here directly.
    n_pixels = int(ds.NumberOfFrames) * ds.Rows * ds.Columns
    frames = unpack_bits(ds.PixelData)[:n_pixels].reshape(-1, ds.Rows, ds.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    ps = np.asarray(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    inverse = np.linalg.inv(vol.affine)
    out = np.zeros(vol.shape, bool)
    r, c = np.meshgrid(np.arange(ds.Rows), np.arange(ds.Columns), indexing="ij")
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        ipp = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        lps = ipp[:, None] + iop[:3, None] * ps[1] * c.ravel() + iop[3:, None] * ps[0] * r.ravel()
        ras = lps * np.array([-1.0, -1.0, 1.0])[:, None]
        ijk = inverse[:3, :3] @ ras + inverse[:3, 3:4]
        idx = np.rint(ijk).astype(int)
        assert np.max(np.abs(ijk - idx)) < 1e-3  # every SEG pixel lands on a voxel centre
        k = int(idx[2, 0])
        source = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert source == vol.header.sop_instance_uids[k]  # the frame references the image of its slice
        out[idx[0], idx[1], idx[2]] = frame.ravel() > 0
    return out


def check_seg_header(seg_path: Path, vol) -> None:
    ds = pydicom.dcmread(seg_path)
    rec = vol.header
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == rec.study_uid and ds.FrameOfReferenceUID == rec.frame_of_reference_uid
    assert ds.SeriesInstanceUID != rec.series_uid
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "Liver"
    prop = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("10200004", "SCT")
    referenced = ds.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == rec.series_uid
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == set(rec.sop_instance_uids)


@st.composite
def oblique_series(draw) -> dict:
    angles = np.radians(draw(st.lists(st.floats(-180, 180), min_size=3, max_size=3)))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rot = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
    rows = draw(st.integers(2, 7))
    columns = draw(st.integers(max(2, -(-8 // rows)), 7))  # at least 8 pixels (see MIN_FRAME_PIXELS)
    return {"shape": (draw(st.integers(1, 4)), rows, columns), "row_dir": rot[:, 0], "col_dir": rot[:, 1],
            "pixel_spacing": (draw(st.floats(0.3, 2)), draw(st.floats(0.3, 2))),
            "slice_step": draw(st.sampled_from([-1.0, 1.0])) * draw(st.floats(0.5, 4)),
            "origin": tuple(draw(st.floats(-200, 200)) for _ in range(3)), "seed": draw(st.integers(0, 1000)),
            "mask_seed": draw(st.integers(0, 1000)), "density": draw(st.floats(0, 1))}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=oblique_series())
def test_seg_round_trip_in_world_coordinates(spec: dict) -> None:
    spec = dict(spec)
    shape, mask_seed, density = spec.pop("shape"), spec.pop("mask_seed"), spec.pop("density")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_series(np.zeros(shape, np.int16), folder / "ct", **spec)
        vol = load_dicom_series(folder / "ct")
        mask = np.random.default_rng(mask_seed).random(vol.shape) < density
        seg = write_dicom_seg(mask, vol, None, folder / "out" / "liver.dcm")
        np.testing.assert_array_equal(read_dicom_seg(seg, vol), mask)
        np.testing.assert_array_equal(mask_from_plain_pydicom(seg, vol), mask)
        check_seg_header(seg, vol)
        assert sorted(p.name for p in (folder / "out").iterdir()) == ["liver.dcm"]  # no temporary file left


def test_real_series_round_trip_with_given_sources_in_any_order(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    mask = np.zeros(vol.shape, np.uint8)
    mask[4:12, 2:9, 1:4] = 1
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(CT5N.iterdir(), reverse=True)]
    seg = write_dicom_seg(mask, vol.header, sources, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_dicom_seg(seg, vol), mask > 0)
    np.testing.assert_array_equal(mask_from_plain_pydicom(seg, vol), mask > 0)
    check_seg_header(seg, vol)
    assert pydicom.dcmread(seg).NumberOfFrames == 3  # frames without liver are omitted


def test_empty_mask(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    seg = write_dicom_seg(np.zeros(vol.shape, bool), vol, None, tmp_path / "seg.dcm")
    assert not read_dicom_seg(seg, vol).any()


def test_2d_ultrasound_without_geometry(tmp_path: Path) -> None:
    image = write_single_frame(np.zeros((6, 8), np.uint8), tmp_path / "us.dcm", pixel_spacing=(0.2, 0.2))
    vol = load_dicom_series(image)
    mask = np.zeros(vol.shape, bool)
    mask[1:5, 0:2, 0] = True
    seg = write_dicom_seg(mask, vol, None, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_dicom_seg(seg, vol), mask)
    frame = pydicom.dcmread(seg).pixel_array.reshape(6, 8)
    np.testing.assert_array_equal(frame, mask[:, ::-1, 0].T)  # DICOM rows are top-down, volume rows bottom-up


def test_2d_ultrasound_without_spacing(tmp_path: Path) -> None:
    vol = load_dicom_series(write_single_frame(np.zeros((3, 5), np.uint8), tmp_path / "us.dcm"))
    mask = np.eye(5, 3, dtype=bool)[:, :, None]
    np.testing.assert_array_equal(read_dicom_seg(write_dicom_seg(mask, vol, None, tmp_path / "s.dcm"), vol), mask)


def test_tiny_images_are_refused(tmp_path: Path) -> None:
    vol = load_dicom_series(write_series(np.zeros((2, 2, 3), np.int16), tmp_path / "ct"))
    with pytest.raises(InputError, match="2x3 pixels are too small for a DICOM-SEG"):
        write_dicom_seg(np.ones(vol.shape, bool), vol, None, tmp_path / "seg.dcm")


def test_existing_file_is_replaced_atomically(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    out = tmp_path / "seg.dcm"
    out.write_bytes(b"old")
    write_dicom_seg(np.ones(vol.shape, bool), vol, None, out)
    assert read_dicom_seg(out, vol).all() and [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]


def test_refusals_leave_nothing_behind(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    out = tmp_path / "seg.dcm"
    with pytest.raises(InputError, match=r"mask shape \(16, 16, 4\) differs from the series grid \(16, 16, 5\)"):
        write_dicom_seg(np.zeros((16, 16, 4), bool), vol, None, out)
    with pytest.raises(InputError, match="the source images lack 2 of the 5 slices"):
        write_dicom_seg(np.zeros(vol.shape, bool), vol, list(vol.header.files)[:3], out)
    with pytest.raises(InputError, match="not a DICOM volume"):
        write_dicom_seg(np.zeros((2, 2, 1)), object(), None, out)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_seg_of_another_series_is_refused(tmp_path: Path) -> None:
    vol = load_dicom_series(CT5N)
    other = load_dicom_series(write_series(np.zeros((5, 16, 16), np.int16), tmp_path / "other"))
    seg = write_dicom_seg(np.ones(other.shape, bool), other, None, tmp_path / "seg.dcm")
    with pytest.raises(InputError, match="SEG does not fit series"):
        read_dicom_seg(seg, vol)

"""One-line InputErrors for bad DICOM input: each refused case names the file (or series folder), the series
and the reason; non-image objects are skipped, never errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from livercad.errors import InputError
from livercad.io.dicom import find_series, load_dicom_series
from livercad.io.dicom_synth import base_dataset, write_series

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
FRAMES = np.arange(6 * 4 * 5, dtype=np.int16).reshape(6, 4, 5)


def refused(source, *words: str) -> InputError:
    """Load ``source``, expect an InputError whose one-line message holds every word."""
    with pytest.raises(InputError) as info:
        load_dicom_series(source)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(info.value.path))
    for word in words:
        assert word in message, message
    return info.value


def _series(folder: Path, **kwargs) -> list[Path]:
    return write_series(FRAMES, folder, series_description="Liver PV", series_number=5, seed=None, **kwargs)


def test_missing_slice(tmp_path: Path) -> None:
    files = _series(tmp_path, slice_step=2.0)
    files[3].unlink()
    err = refused(tmp_path, "missing slice", "gap of 4.000 mm", "series 5 'Liver PV'", "2.0 x the median")
    assert err.path == str(files[4])


@settings(max_examples=20, deadline=None)
@given(missing=st.integers(1, 4), step=st.floats(0.5, 5.0), n_lost=st.integers(1, 3))
def test_any_interior_gap_is_refused(tmp_path_factory, missing: int, step: float, n_lost: int) -> None:
    folder = tmp_path_factory.mktemp("gap")
    files = write_series(np.zeros((9, 2, 2), np.int16), folder, slice_step=step, seed=None)
    for f in files[missing:missing + n_lost]:
        f.unlink()
    refused(folder, "missing slice")


def test_real_series_with_a_gap() -> None:
    refused(TEST_FILES / "dicomdirtests" / "77654033" / "CT2", "missing slice", "gap of 202.500 mm", "Routine Brain")


def test_duplicate_positions(tmp_path: Path) -> None:
    uid = pydicom.uid.generate_uid()
    _series(tmp_path / "echo1", series_uid=uid)
    _series(tmp_path / "echo2", series_uid=uid)
    refused(tmp_path, "duplicate slice position", "2 images", "echoes, phases or time points")


def test_uneven_spacing(tmp_path: Path) -> None:
    files = _series(tmp_path, slice_step=2.0)
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient = [0, 0, 4.6]  # 0.6 mm off the grid; no step reaches 1.5 x the median
    ds.save_as(files[2])
    refused(tmp_path, "uneven slice spacing", "slice 2 lies 0.600 mm off")


@pytest.mark.parametrize(("per_slice", "words"), [
    ({"ImageOrientationPatient": [1, 0, 0, 0, 0.8, -0.6]}, ("orientation changes within the series",)),
    ({"PixelSpacing": [0.9, 1.0]}, ("pixel spacing changes within the series", "[0.9, 1.0] mm here")),
])
def test_orientation_or_spacing_change(tmp_path: Path, per_slice: dict, words: tuple[str, ...]) -> None:
    files = _series(tmp_path, per_slice={3: per_slice})
    assert refused(tmp_path, *words).path == str(files[3])


def test_real_localizer_series_with_changing_orientation() -> None:
    refused(TEST_FILES / "dicomdirtests" / "98892003" / "MR700", "orientation changes within the series")


def test_matrix_size_change(tmp_path: Path) -> None:
    uid = pydicom.uid.generate_uid()
    _series(tmp_path / "a", series_uid=uid)
    write_series(np.zeros((1, 6, 5), np.int16), tmp_path / "b", series_uid=uid, origin=(0, 0, 6), seed=None)
    refused(tmp_path, "matrix size changes within the series", "6x5 here", "4x5 in")


@pytest.mark.parametrize("tilt", [0.5, 15.0])
def test_gantry_tilt_is_refused(tmp_path: Path, tilt: float) -> None:
    direction = (0, np.sin(np.radians(tilt)), np.cos(np.radians(tilt)))
    _series(tmp_path, slice_dir=direction, slice_step=2.0, extra={"GantryDetectorTilt": tilt})
    refused(tmp_path, f"gantry tilt of {tilt:.2f} degrees", f"(GantryDetectorTilt {tilt:g})", "dcm2niix")


def test_undecodable_transfer_syntax(tmp_path: Path) -> None:
    files = _series(tmp_path)
    ds = pydicom.dcmread(files[2])
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    ds.save_as(files[2], implicit_vr=False, little_endian=True)
    err = refused(tmp_path, "transfer syntax 1.2.3.4.5.6.7 (unknown) cannot be decoded", "Liver PV")
    assert err.path == str(files[2])


def test_corrupt_compressed_data(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm", download=False))
    ds.PixelData = ds.PixelData[:100]
    ds.save_as(tmp_path / "bad.dcm")
    refused(tmp_path / "bad.dcm", "truncated or corrupt pixel data (RLE Lossless)")


@pytest.mark.parametrize("keep", [0.9, 0.5])
def test_truncated_file(tmp_path: Path, keep: float) -> None:
    files = write_series(np.zeros((4, 64, 64), np.int16), tmp_path, seed=None)  # pixel data: most of each file
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[: int(len(raw) * keep)])
    assert refused(tmp_path, "truncated or corrupt pixel data", "less than expected").path == str(files[2])


def test_real_truncated_file() -> None:
    refused(Path(get_testdata_file("MR_truncated.dcm", download=False)), "truncated", "8130 vs 8192 bytes")


@pytest.mark.parametrize("keep", [300, 700, 900])
def test_header_cut_short(tmp_path: Path, keep: int) -> None:
    """Cut inside the header: the slice either keeps its series (and is refused as truncated), or loses its
    SeriesInstanceUID, is listed as unreadable, and its neighbours' series is refused all the same."""
    files = _series(tmp_path)
    files[0].write_bytes(files[0].read_bytes()[:keep])
    err = refused(tmp_path, "truncated")
    assert err.path == str(files[0])


def test_unreadable_file_elsewhere_does_not_block_a_series(tmp_path: Path) -> None:
    _series(tmp_path / "ct")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.dcm").write_bytes(_series(tmp_path / "other")[0].read_bytes()[:300])
    shutil.rmtree(tmp_path / "other")
    series = find_series(tmp_path)
    assert len(series) == 1 and [s.kind for s in series[0].skipped] == ["unreadable"]
    assert load_dicom_series(series[0]).shape == (5, 4, 6)


def test_dicomdir_is_refused_with_advice() -> None:
    dicomdir = TEST_FILES / "dicomdirtests" / "DICOMDIR"
    refused(dicomdir, "DICOMDIR", "pass the folder of images")
    with pytest.raises(InputError, match="pass the folder of images"):
        find_series(dicomdir)


def test_multi_frame_file(tmp_path: Path) -> None:
    ds = base_dataset("CT")
    ds.set_pixel_data(np.zeros((3, 4, 4), np.int16), "MONOCHROME2", 16)
    ds.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
    refused(tmp_path / "mf.dcm", "multi-frame image (3 frames) is not supported")


def test_non_image_objects_alone(tmp_path: Path) -> None:
    for name in ["test-SR.dcm", "rtstruct.dcm", "liver_1frame.dcm"]:
        shutil.copy(get_testdata_file(name, download=False), tmp_path / name)
    with pytest.raises(InputError, match=r"no DICOM image series found \(3 objects skipped"):
        find_series(tmp_path)
    refused(tmp_path / "test-SR.dcm", "not an image series", "non-image object (SR)")


def test_non_image_objects_next_to_a_series_are_not_errors(tmp_path: Path) -> None:
    _series(tmp_path / "ct")
    shutil.copy(get_testdata_file("test-SR.dcm", download=False), tmp_path / "sr.dcm")
    assert load_dicom_series(tmp_path).shape == (5, 4, 6)


def test_folder_with_several_series_names_them(tmp_path: Path) -> None:
    _series(tmp_path / "a")
    write_series(FRAMES, tmp_path / "b", series_description="Liver ART", series_number=4)
    refused(tmp_path, "folder holds 2 image series", "Liver_ART_s4, Liver_PV_s5", "find_series")


@pytest.mark.parametrize("what", ["missing", "text", "empty-folder"])
def test_not_dicom(tmp_path: Path, what: str) -> None:
    path = tmp_path / "x.dcm"
    if what == "text":
        path.write_text("hello")
    if what == "empty-folder":
        path = tmp_path
    words = {"missing": "not found", "text": "not a DICOM file", "empty-folder": "no DICOM image series"}[what]
    refused(path, words)


def test_files_of_two_series(tmp_path: Path) -> None:
    a = _series(tmp_path / "a")
    b = write_series(FRAMES, tmp_path / "b")
    refused([a[0], b[0]], "belong to 2 series")

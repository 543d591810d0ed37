"""Loading DICOM with livercad.io.dicom: values, compressed transfer syntaxes, 2-D images, case records, series
discovery. References: pydicom's shipped real files and pydicom's own decoding of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from livercad.io.dicom import DicomRecord, find_series, load_dicom_series
from livercad.io.dicom_meta import case_id_for, contrast_phase, phase_from_text
from livercad.io.dicom_pixels import DEFAULT_PLUGINS, PREFERRED_PLUGINS, modality_values
from livercad.io.dicom_synth import base_dataset, write_series, write_single_frame
from livercad.io.manifest_check import safe_case_id
from livercad.io.nifti import load_mask, load_volume, save_mask

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"


def _testfile(name: str) -> Path:
    return Path(get_testdata_file(name, download=False))


def test_ct_values_are_hounsfield_units_float32() -> None:
    path = _testfile("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = load_dicom_series(path)
    assert vol.data.dtype == np.float32 and float(ds.RescaleIntercept) == -1024
    np.testing.assert_array_equal(vol.data[:, :, 0], (ds.pixel_array.astype(np.float64) - 1024)[::-1].T)
    rec = vol.header
    assert isinstance(rec, DicomRecord)
    assert (rec.modality, rec.rows, rec.columns) == ("CT", 128, 128)
    assert rec.patient_geometry and rec.spacing_known
    assert rec.study_uid == ds.StudyInstanceUID and rec.series_uid == ds.SeriesInstanceUID
    assert rec.frame_of_reference_uid == ds.FrameOfReferenceUID
    assert rec.sop_instance_uids == (ds.SOPInstanceUID,)
    assert (rec.contrast_phase, rec.contrast_phase_source) == ("contrast-enhanced", "ContrastBolusAgent")  # ISOVUE


@pytest.mark.parametrize("twin", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm",
                                  "MR_small_padded.dcm"])
def test_compressed_and_other_encodings_equal_their_uncompressed_twin(twin: str) -> None:
    ref = load_dicom_series(_testfile("MR_small.dcm"))
    vol = load_dicom_series(_testfile(twin))
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)


def _compress_copy(source: Path, out: Path, syntax: str) -> None:
    out.mkdir(exist_ok=True)
    for f in source.iterdir():
        ds = pydicom.dcmread(f)
        ds.compress(syntax, generate_instance_uid=False)
        ds.save_as(out / f.name, enforce_file_format=True)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_multi_file_series_equals_the_original(tmp_path: Path, syntax: str) -> None:
    """pydicom's real 5-slice CT series (16x16: too small for OpenJPEG's encoder, so JPEG 2000 gets a
    64x64 synthetic series), each file re-encoded with pydicom's own encoders."""
    source = CT5N
    if syntax == JPEG2000Lossless:
        frames = np.random.default_rng(1).integers(-1000, 1500, (4, 64, 64)).astype(np.int16)
        write_series(frames, tmp_path / "raw", row_dir=(0, 1, 0), col_dir=(0.6, 0, -0.8), intercept=-1024.0)
        source = tmp_path / "raw"
    _compress_copy(source, tmp_path / "enc", syntax)
    ref, vol = load_dicom_series(source), load_dicom_series(tmp_path / "enc")
    assert pydicom.dcmread(next((tmp_path / "enc").iterdir())).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_array_equal(vol.affine, ref.affine)
    assert vol.header.sop_instance_uids == ref.header.sop_instance_uids


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPGExtended.dcm",
                                  "JPEGLSNearLossless_16.dcm", "SC_rgb_rle_16bit.dcm"])
def test_other_compressed_real_files_decode_like_pydicom(name: str) -> None:
    path = _testfile(name)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    if arr.ndim == 3:  # colour: identical channels kept, else BT.601 luminance
        arr = arr[..., 0] if np.all(arr == arr[..., :1]) else arr @ np.array([0.299, 0.587, 0.114])
    vol = load_dicom_series(path)
    np.testing.assert_allclose(vol.data[:, :, 0], arr[::-1].T.astype(np.float32), rtol=1e-6)


def test_a_preferred_plugin_is_installed_for_every_compressed_syntax() -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000, HTJ2KLossless, JPEGBaseline8Bit, JPEGExtended12Bit

    for uid in [*PREFERRED_PLUGINS, JPEG2000Lossless, JPEG2000, HTJ2KLossless, RLELossless, JPEGBaseline8Bit,
                JPEGExtended12Bit]:
        wanted = PREFERRED_PLUGINS.get(uid, DEFAULT_PLUGINS)
        assert set(wanted) & set(get_decoder(uid).available_plugins), uid


def test_a_failing_preferred_plugin_falls_back_to_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from livercad.io import dicom_pixels

    ds = pydicom.dcmread(_testfile("GDCMJ2K_TextGBR.dcm"))  # Pillow cannot decode this one, pylibjpeg can
    syntax = ds.file_meta.TransferSyntaxUID
    monkeypatch.setitem(dicom_pixels.PREFERRED_PLUGINS, syntax, ("pillow",))
    expected = pydicom.pixels.pixel_array(ds, decoding_plugin="pylibjpeg")
    np.testing.assert_array_equal(dicom_pixels.decode_stored(ds), expected)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    frame = np.array([[0, 100], [4095, 7]], np.uint16)
    path = write_single_frame(frame, tmp_path / "m1.dcm", modality="CR",
                              extra={"PhotometricInterpretation": "MONOCHROME1", "BitsStored": 12, "HighBit": 11})
    np.testing.assert_array_equal(modality_values(pydicom.dcmread(path), path), 4095 - frame)


@pytest.mark.parametrize(("kwargs", "spacing", "source"), [
    ({"pixel_spacing": (0.3, 0.2)}, (0.2, 0.3, 1.0), "PixelSpacing"),
    ({"region_delta_cm": (0.025, 0.04)}, (0.25, 0.4, 1.0), "SequenceOfUltrasoundRegions"),
    ({}, (1.0, 1.0, 1.0), "unknown"),
])
def test_2d_ultrasound_frame(tmp_path: Path, kwargs: dict, spacing: tuple, source: str) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (7, 9), dtype=np.uint8)
    vol = load_dicom_series(write_single_frame(frame, tmp_path / "us.dcm", **kwargs))
    assert vol.shape == (9, 7, 1)
    np.testing.assert_array_equal(vol.data[:, :, 0], frame[::-1].T)
    assert vol.spacing == pytest.approx(spacing)
    rec = vol.header
    assert (rec.spacing_source, rec.spacing_known, rec.patient_geometry) == (source, source != "unknown", False)
    assert rec.frame_of_reference_uid is None
    assert np.diag(vol.affine)[:2] == pytest.approx([-spacing[0], spacing[1]])


def test_rgb_ultrasound_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    rgb[0, 0] = 77  # a grey pixel
    vol = load_dicom_series(write_single_frame(rgb, tmp_path / "rgb.dcm"))
    assert vol.data[0, 3, 0] == pytest.approx(77)
    assert vol.data[1, 0, 0] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, rel=1e-6)


def test_rescale_is_applied_per_slice(tmp_path: Path) -> None:
    frames = np.full((3, 2, 2), 100, np.int16)
    write_series(frames, tmp_path, slope=2.0, intercept=-1000.0, per_slice={1: {"RescaleSlope": 0.5}})
    vol = load_dicom_series(tmp_path)
    assert vol.data[0, 0].tolist() == [-800.0, -950.0, -800.0]


@pytest.mark.parametrize(("text", "phase"), [
    ("ABD PORTAL VENOUS 5mm", "portal-venous"), ("Abdomen PV 3.0 B30f", "portal-venous"),
    ("CT ART PHASE", "arterial"), ("Late arterial", "arterial"), ("LIVER DELAYED 3min", "delayed"),
    ("Native 5mm", "non-contrast"), ("NON-CONTRAST abdomen", "non-contrast"), ("Abd w/o contrast", "non-contrast"),
    ("Equilibrium", "delayed"), ("T1 VIBE PRE", "non-contrast"), ("T1 20 MIN HBP", "delayed"),
    ("Preop planning", None), ("Heart 3mm", None), ("Partial body", None), ("Abdomen 5mm", None), ("", None),
])
def test_phase_keywords(text: str, phase: str | None) -> None:
    assert phase_from_text(text) == phase


def test_contrast_phase_sources() -> None:
    assert contrast_phase("Native", "Omnipaque", None) == ("non-contrast", "SeriesDescription")
    assert contrast_phase("AX 5mm", "NONE", None) == ("non-contrast", "ContrastBolusAgent")
    assert contrast_phase("AX 5mm", None, "IV") == ("contrast-enhanced", "ContrastBolusRoute")
    assert contrast_phase(None, None, None, protocol="Liver 3 phase ARTERIAL") == ("arterial", "ProtocolName")
    assert contrast_phase("AX 5mm", "", "") == ("unknown", "none")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80), number=st.one_of(st.none(), st.integers(0, 10**6)))
def test_case_ids_are_always_safe(text: str, number: int | None) -> None:
    assert safe_case_id(case_id_for(text, number, "1.2.840.113619.2.55.3"))


def _folder_with_three_phases_and_non_images(tmp_path: Path) -> str:
    study = pydicom.uid.generate_uid()
    for number, desc in [(2, "Abd Arterial"), (3, "Abd Portal venous"), (4, "Abd Delayed")]:
        write_series(np.zeros((3, 4, 4), np.int16), tmp_path / f"s{number}", series_description=desc,
                     series_number=number, study_uid=study)
    write_series(np.zeros((1, 4, 4), np.int16), tmp_path / "scout", series_description="Topogram", seed=None,
                 study_uid=study, extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    for modality, sop in [("KO", "1.2.840.10008.5.1.4.1.1.88.59"), ("PR", "1.2.840.10008.5.1.4.1.1.11.1")]:
        ds = base_dataset(modality, study_uid=study, sop_class=sop)
        ds.save_as(tmp_path / f"{modality}.dcm", enforce_file_format=True)
    for name in ["test-SR.dcm", "liver_1frame.dcm", "rtstruct.dcm", "rtplan.dcm"]:
        shutil.copy(_testfile(name), tmp_path / name)
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", tmp_path / "DICOMDIR")
    (tmp_path / "notes.txt").write_text("not dicom")
    return study


def test_folder_with_several_series_gives_one_case_each_and_lists_skipped(tmp_path: Path) -> None:
    _folder_with_three_phases_and_non_images(tmp_path)
    series = find_series(tmp_path)
    assert [s.case_id for s in series] == ["Abd_Arterial_s2", "Abd_Delayed_s4", "Abd_Portal_venous_s3"]
    assert all(len(s.files) == 3 and s.modality == "CT" for s in series)
    skipped = {p.path.name: p.reason for p in series[0].skipped}
    assert set(skipped) == {"KO.dcm", "PR.dcm", "slice0000.dcm"}  # same study only; the scout is skipped too
    assert "localizer" in skipped["slice0000.dcm"]
    vol = load_dicom_series(series[2])
    assert vol.header.contrast_phase == "portal-venous" and vol.header.case_id == "Abd_Portal_venous_s3"
    assert {s.modality for s in vol.header.skipped} == {"KO", "PR", "CT"}
    assert vol.header.as_dict()["skipped"][0]["path"].endswith(".dcm")


def test_every_non_image_kind_is_skipped_not_an_error(tmp_path: Path) -> None:
    from livercad.io.dicom_scan import scan_folder

    _folder_with_three_phases_and_non_images(tmp_path)
    scan = scan_folder(tmp_path)
    reasons = {p.path.name: p.reason for p in scan.skipped}
    for name, word in [("test-SR.dcm", "SR"), ("liver_1frame.dcm", "SEG"), ("rtstruct.dcm", "RTSTRUCT"),
                       ("rtplan.dcm", "RTPLAN"), ("KO.dcm", "KO"), ("PR.dcm", "PR"), ("DICOMDIR", "DICOMDIR")]:
        assert word in reasons[name]
    assert [p.name for p in scan.not_dicom] == ["notes.txt"]


def test_real_test_tree_with_dicomdirs_and_many_series() -> None:
    series = find_series(TEST_FILES / "dicomdirtests")
    assert len({s.case_id for s in series}) == len(series) > 10
    ct5n = [s for s in series if s.files[0].parent == CT5N]
    assert len(ct5n) == 1 and len(ct5n[0].files) == 5


def test_ultrasound_series_without_geometry_is_one_case_per_image(tmp_path: Path) -> None:
    uid = pydicom.uid.generate_uid()
    for n in range(3):
        write_single_frame(np.full((4, 6), n, np.uint8), tmp_path / f"us{n}.dcm",
                           extra={"SeriesInstanceUID": uid, "InstanceNumber": n + 1, "SeriesDescription": "Liver"})
    series = find_series(tmp_path)
    assert [s.case_id for s in series] == ["Liver_s1_i1", "Liver_s1_i2", "Liver_s1_i3"]
    assert [float(load_dicom_series(s).data.max()) for s in series] == [0.0, 1.0, 2.0]


def test_list_of_files_and_save_mask_on_a_dicom_volume(tmp_path: Path) -> None:
    vol = load_dicom_series(sorted(CT5N.iterdir()))
    assert vol.path == CT5N and vol.original_shape == vol.shape
    mask = np.zeros(vol.shape, np.uint8)
    mask[3:9, 2:5, 1:4] = 1
    out = save_mask(mask, vol, tmp_path / "m.nii.gz")
    back = load_volume(out)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    np.testing.assert_array_equal(load_mask(out, vol), mask > 0)

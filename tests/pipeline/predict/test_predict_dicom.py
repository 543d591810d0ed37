"""DICOM series through run_pipeline: geometry of the masks, DICOM-SEG output, modality from the tag, failures."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from livercad.errors import ConfigError
from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_seg import read_dicom_seg, write_dicom_seg
from livercad.io.dicom_synth import write_series
from livercad.phantom.case import make_case
from livercad.pipeline.predict.run import run_pipeline

OBLIQUE = np.array([[0.9397, -0.3304, -0.0885], [0.3420, 0.9077, 0.2432], [0.0, -0.2588, 0.9659]])  # Rz(20) Rx(15)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["case_id"]: r for r in csv.DictReader(path.open())}


def phantom_series(folder: Path, *, oblique: bool = False, description: str = "Abd Portal venous",
                   number: int = 5, seed: int = 1, modality: str = "CT") -> list[Path]:
    """A phantom CT volume (48 x 40 x 8, HU) written as a DICOM series (LPS axes, or an oblique orientation)."""
    image = make_case("c", modality="ct", shape=(48, 40, 8), seed=seed).image
    frames = np.stack([np.rint(image[:, ::-1, k].T + 1024).astype(np.int16) for k in range(image.shape[2])])
    rot = OBLIQUE / np.linalg.norm(OBLIQUE, axis=0) if oblique else np.eye(3)
    return write_series(frames, folder, row_dir=rot[:, 0], col_dir=rot[:, 1], origin=(-20.0, 15.0, 100.0),
                        pixel_spacing=(0.9, 0.8), slice_step=3.0, intercept=-1024.0, modality=modality,
                        series_description=description, series_number=number)


@pytest.mark.parametrize("oblique", [False, True], ids=["lps", "oblique"])
def test_dicom_series_gives_nifti_and_dicom_seg_on_its_own_grid(tmp_path: Path, make_bundle: Callable[..., Path],
                                                                 oblique: bool) -> None:
    phantom_series(tmp_path / "in" / "ct", oblique=oblique)
    out, bundle = tmp_path / "out", make_bundle(overrides=["inference.qc_images=true"])
    res = run_pipeline(tmp_path / "in", out, model=bundle, progress=False, output_format="both", modality="mr")
    [case] = res.cases
    assert case.ok, case.error
    vol = load_dicom_series(tmp_path / "in" / "ct")
    assert np.allclose(np.abs(vol.affine[:3, :3]) > 1e-3, np.eye(3)) is not oblique  # oblique: no axis-aligned grid
    img = nib.load(case.mask_path)
    assert img.shape == vol.shape and img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-5)
    mask = np.asarray(img.dataobj)
    assert 0 < mask.sum() < mask.size  # a real test of the round trip (the random segmenter marks some voxels)
    assert case.seg_path == str((out / "seg" / f"{case.case_id}.dcm").resolve())
    np.testing.assert_array_equal(read_dicom_seg(case.seg_path, vol), mask > 0)
    row = _rows(out / "predictions.csv")[case.case_id]
    assert (row["modality"], row["modality_source"], row["intensity_unit"]) == ("ct", "case", "HU")  # tag wins
    assert (row["series_description"], row["contrast_phase"], row["input_format"]) == (
        "Abd Portal venous", "portal-venous", "dicom")
    assert row["spacing_known"] == "true" and row["seg_path"] == case.seg_path and row["note"] == ""
    assert float(row["liver_volume_ml"]) == pytest.approx(mask.sum() * 0.9 * 0.8 * 3.0 / 1000, rel=1e-5)
    record = json.loads((out / "cases" / f"{case.case_id}.json").read_text())
    assert record["image_record"]["series_uid"] == vol.header.series_uid and record["spacing_known"] is True
    assert (out / "qc" / f"{case.case_id}.png").is_file()
    page = (out / "report.html").read_text()
    assert "Abd Portal venous" in page and f"{case.case_id}.dcm" in page


def test_resume_keeps_finished_dicom_cases_and_redoes_those_missing_an_output(
        tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path]) -> None:
    phantom_series(tmp_path / "in" / "ct")
    ct_volume(tmp_path / "in" / "nii.nii.gz")
    out, bundle = tmp_path / "out", make_bundle()
    first = run_pipeline(tmp_path / "in", out, model=bundle, progress=False, output_format="dicom-seg")
    by_id = {c.case_id: c for c in first.cases}
    dicom, nifti = by_id["Abd_Portal_venous_s5"], by_id["nii"]
    assert dicom.ok and dicom.mask_path is None and Path(dicom.seg_path).is_file()
    assert not (out / "masks" / "Abd_Portal_venous_s5.nii.gz").exists()
    assert nifti.ok and nifti.seg_path is None and Path(nifti.mask_path).is_file()
    assert nifti.note == "dicom-seg needs DICOM input (NIfTI mask written)"  # a note, not a failure
    assert first.all_ok
    again = run_pipeline(tmp_path / "in", out, model=bundle, progress=False, output_format="dicom-seg", resume=True)
    assert json.loads((out / "run.json").read_text())["timing"]["cases_resumed"] == 2
    assert [c.seconds for c in again.cases] == [c.seconds for c in first.cases]
    both = run_pipeline(tmp_path / "in", out, model=bundle, progress=False, output_format="both", resume=True)
    assert json.loads((out / "run.json").read_text())["timing"]["cases_resumed"] == 1  # the NIfTI case's note
    redone = {c.case_id: c for c in both.cases}["Abd_Portal_venous_s5"]
    assert Path(redone.mask_path).is_file() and Path(redone.seg_path).is_file()


def test_folder_with_two_series_and_a_nifti_is_three_cases_and_a_broken_series_fails_alone(
        tmp_path: Path, make_bundle: Callable[..., Path], ct_volume: Callable[..., Path]) -> None:
    phantom_series(tmp_path / "in" / "study", description="AX arterial", number=3, seed=2)
    phantom_series(tmp_path / "in" / "study", description="AX delayed", number=6, seed=3)  # same folder
    ct_volume(tmp_path / "in" / "scan.nii.gz")
    broken = phantom_series(tmp_path / "in" / "broken", description="gap", number=9)
    broken[3].unlink()  # a missing slice
    res = run_pipeline(tmp_path / "in", tmp_path / "out", model=make_bundle(), progress=False)
    assert [c.case_id for c in res.cases] == ["AX_arterial_s3", "AX_delayed_s6", "gap_s9", "scan"]
    [failed] = res.failures
    assert failed.case_id == "gap_s9" and "\n" not in failed.error
    assert failed.error.startswith(str(tmp_path / "in" / "broken")) and "missing slice" in failed.error
    preds = _rows(tmp_path / "out" / "predictions.csv")
    assert sorted(preds) == ["AX_arterial_s3", "AX_delayed_s6", "scan"]
    assert (preds["AX_arterial_s3"]["contrast_phase"], preds["AX_delayed_s6"]["contrast_phase"]) == (
        "arterial", "delayed")
    assert (preds["scan"]["series_description"], preds["scan"]["contrast_phase"], preds["scan"]["input_format"]) == (
        "", "unknown", "nifti")  # a CT whose phase no tag or column gives
    assert _rows(tmp_path / "out" / "failures.csv")["gap_s9"]["reason"] == failed.error


def test_manifest_with_series_folder_dicom_seg_reference_and_phase_column(
        tmp_path: Path, make_bundle: Callable[..., Path], manifest_csv: Callable[..., Path]) -> None:
    phantom_series(tmp_path / "ct1")
    one = phantom_series(tmp_path / "ct2", description="plain", number=2, seed=4)
    vol = load_dicom_series(tmp_path / "ct1")
    ref = np.zeros(vol.shape, np.uint8)
    ref[10:30, 8:30, 2:6] = 1
    write_dicom_seg(ref, vol, None, tmp_path / "ref.dcm")
    m = manifest_csv(tmp_path / "m.csv", "case_id,image,mask,modality,contrast_phase",
                     ["a,ct1,ref.dcm,,arterial", f"b,{one[0].relative_to(tmp_path)},,MR,", "c,ct2,ref.dcm,,"])
    res = run_pipeline(m, tmp_path / "out", model=make_bundle(), progress=False)
    a, b, c = res.cases
    assert a.ok and a.contrast_phase == "arterial" and a.dice is not None and a.modality_source == "case"
    assert not b.ok and "contradicts the DICOM Modality tag CT" in b.error and b.error.startswith(str(one[0]))
    assert not c.ok and c.error.startswith(str(tmp_path / "ref.dcm")) and "SEG does not fit series" in c.error


def test_unknown_output_format_stops_the_run(tmp_path: Path, make_bundle: Callable[..., Path],
                                             ct_volume: Callable[..., Path]) -> None:
    scan = ct_volume(tmp_path / "a.nii.gz")
    with pytest.raises(ConfigError, match="--output-format"):
        run_pipeline(scan, tmp_path / "out", model=make_bundle(), progress=False, output_format="dicom")

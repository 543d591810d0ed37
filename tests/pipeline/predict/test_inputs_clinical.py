"""Input discovery of clinical files: DICOM series in folders and lists, PNG/JPEG files, run settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livercad.errors import ConfigError, InputError
from livercad.io.dicom_synth import base_dataset, write_series, write_single_frame
from livercad.pipeline.predict.inputs import discover_inputs


def _series(folder: Path, description: str, number: int, n: int = 3) -> list[Path]:
    return write_series(np.zeros((n, 8, 8), np.int16), folder, series_description=description,
                        series_number=number, slice_step=2.0)


def test_folder_mixes_nifti_png_and_dicom_series_each_one_case(tmp_path: Path) -> None:
    _series(tmp_path / "dicom", "Portal venous", 4)
    _series(tmp_path / "dicom", "Arterial", 3)  # two series in one folder: two cases
    (tmp_path / "b.nii.gz").write_bytes(b"x")
    (tmp_path / "us.PNG").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper.nii.gz").write_bytes(b"x")  # NIfTI/PNG files of subfolders are not cases
    cases, problems = discover_inputs(tmp_path, modality="us", spacing=(0.2, 0.3), output_format="both")
    assert problems == []
    got = [(c.row.case_id, c.kind, len(c.files)) for c in cases]
    assert got == [("Arterial_s3", "dicom", 3), ("Portal_venous_s4", "dicom", 3), ("b", "nifti", 0),
                   ("us", "image2d", 0)]
    assert all(c.row.image.is_absolute() and c.row.image == tmp_path / "dicom" for c in cases[:2])
    assert {(c.run_modality, c.spacing, c.output_format) for c in cases} == {("us", (0.2, 0.3), "both")}


def test_id_clash_between_a_series_and_a_nifti_is_a_per_case_problem(tmp_path: Path) -> None:
    _series(tmp_path / "d", "liver", 2)
    (tmp_path / "liver_s2.nii.gz").write_bytes(b"x")
    cases, problems = discover_inputs(tmp_path)
    assert [c.row.case_id for c in cases] == ["liver_s2"]
    assert len(problems) == 1 and "duplicate case id 'liver_s2'" in problems[0].reason
    assert problems[0].case_id not in {c.row.case_id for c in cases}  # its record does not overwrite the case's


def test_unreadable_dicom_fails_the_series_beside_it_and_stands_alone_elsewhere(tmp_path: Path) -> None:
    _series(tmp_path / "a", "good", 1)
    files = _series(tmp_path / "b", "bad", 2)
    (tmp_path / "b" / "broken.dcm").write_bytes(files[0].read_bytes()[:300])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "lonely.dcm").write_bytes(files[0].read_bytes()[:300])
    cases, problems = discover_inputs(tmp_path)
    assert [c.row.case_id for c in cases] == ["good_s1"]
    reasons = {p.case_id: p.reason for p in problems}
    assert set(reasons) == {"bad_s2", "lonely"}
    assert reasons["bad_s2"].startswith(str(tmp_path / "b" / "broken.dcm")) and "may be one of its slices" in reasons[
        "bad_s2"]
    assert reasons["lonely"].startswith(str(tmp_path / "c" / "lonely.dcm")) and "\n" not in reasons["lonely"]


def test_non_image_objects_are_skipped_in_folders_and_refused_when_named(tmp_path: Path) -> None:
    _series(tmp_path, "ct", 1)
    sr = base_dataset("SR", sop_class="1.2.840.10008.5.1.4.1.1.88.33")
    sr.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    cases, problems = discover_inputs(tmp_path)
    assert [c.row.case_id for c in cases] == ["ct_s1"] and problems == []
    cases, problems = discover_inputs(tmp_path / "report.dcm")
    assert cases == [] and "not an image series: non-image object (SR)" in problems[0].reason
    dicomdir = base_dataset("CT", sop_class="1.2.840.10008.1.3.10")
    dicomdir.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    assert discover_inputs(tmp_path)[0][0].row.case_id == "ct_s1"  # skipped in a folder
    [problem] = discover_inputs(tmp_path / "DICOMDIR")[1]
    assert problem.reason == f"{tmp_path / 'DICOMDIR'}: a DICOMDIR is an index of a DICOM medium, not an image: " \
                             "pass the folder of images instead"


def test_a_list_of_dicom_files_is_one_series_and_a_single_file_one_case(tmp_path: Path) -> None:
    files = _series(tmp_path / "s", "pv", 7, n=4)
    cases, problems = discover_inputs([*files, tmp_path / "x.nii.gz"])
    assert problems == [] and [(c.row.case_id, c.kind, len(c.files)) for c in cases] == [("x", "nifti", 0),
                                                                                     ("pv_s7", "dicom", 4)]
    us = write_single_frame(np.zeros((6, 8), np.uint8), tmp_path / "frame.dcm")
    [case], _ = discover_inputs(us)
    assert case.kind == "dicom" and case.row.image == us.absolute() and case.files == (us.absolute(),)


def test_manifest_image_folders_dicom_seg_masks_and_phase_column(tmp_path: Path) -> None:
    _series(tmp_path / "ct1", "x", 1)
    (tmp_path / "m.csv").write_text("case_id,image,mask,phase\n"
                                    "a,ct1,seg.dcm,PV\n"
                                    "b,us.jpg,,delayed\n"
                                    "c,c.nii.gz,,Contrast-Enhanced\n")
    cases, _ = discover_inputs(tmp_path / "m.csv")
    assert [(c.kind, c.contrast_phase) for c in cases] == [("dicom", "portal-venous"), ("image2d", "delayed"),
                                                           ("nifti", "contrast-enhanced")]
    assert cases[0].row.mask == tmp_path / "seg.dcm" and cases[0].files == ()


def test_empty_folder_and_bad_run_settings(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no .nii/.nii.gz, .png, .jpg or .jpeg file and no DICOM image series"):
        discover_inputs(tmp_path)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ConfigError, match="--output-format: unknown output format 'seg'"):
        discover_inputs(tmp_path, output_format="seg")
    for bad in [(0, 1), (1, 2, 3), (-1.0, 1.0)]:
        with pytest.raises(ConfigError, match="--spacing"):
            discover_inputs(tmp_path, spacing=bad)
    assert discover_inputs(tmp_path, output_format="DICOM-SEG")[0][0].output_format == "dicom-seg"

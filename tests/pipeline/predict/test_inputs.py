"""Input discovery: folder, file, list, manifest."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from livercad.errors import InputError
from livercad.io.manifest import ManifestRow, read_manifest
from livercad.pipeline.predict.inputs import CaseInput, discover_inputs


def test_folder_case_ids_and_filters(tmp_path: Path) -> None:
    for name in ["b.nii.gz", "a.nii", "notes.txt", ".hidden.nii.gz", "c.NII.GZ"]:
        (tmp_path / name).write_bytes(b"x")
    cases, problems = discover_inputs(tmp_path)
    assert [c.row.case_id for c in cases] == ["a", "b", "c"]
    assert problems == []


def test_duplicate_names_become_per_case_problems(tmp_path: Path) -> None:
    (tmp_path / "a.nii").write_bytes(b"x")
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    cases, problems = discover_inputs(tmp_path)
    assert len(cases) == 1 and len(problems) == 1
    assert "duplicate case id 'a'" in problems[0].reason


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="input not found"):
        discover_inputs(tmp_path / "nope")
    with pytest.raises(InputError, match="no .nii"):
        discover_inputs(tmp_path)


def test_list_and_single_file(tmp_path: Path) -> None:
    f = tmp_path / "x1.nii.gz"
    f.write_bytes(b"x")
    assert [c.row.case_id for c in discover_inputs(f)[0]] == ["x1"]
    assert [c.row.case_id for c in discover_inputs([f, tmp_path / "y.nii"])[0]] == ["x1", "y"]


def test_manifest_rows_and_split_filter(tmp_path: Path) -> None:
    (tmp_path / "i1.nii.gz").write_bytes(b"x")
    (tmp_path / "i2.nii.gz").write_bytes(b"x")
    (tmp_path / "m1.nii.gz").write_bytes(b"x")
    (tmp_path / "m.csv").write_text(
        "case_id,patient_id,image,mask,label,split\n"
        "c1,p1,i1.nii.gz,m1.nii.gz,cirrhosis,test\n"
        "c2,p2,i2.nii.gz,,normal,train\n"
    )
    cases, _ = discover_inputs(tmp_path / "m.csv")
    assert [(c.row.case_id, c.row.label, c.row.patient_id) for c in cases] == [("c1", "cirrhosis", "p1"),
                                                                               ("c2", "normal", "p2")]
    assert cases[0].row.mask == (tmp_path / "m1.nii.gz") and cases[1].row.mask is None
    test_only, _ = discover_inputs(tmp_path / "m.csv", split="test")
    assert [c.row.case_id for c in test_only] == ["c1"]


def test_a_case_is_its_manifest_record_plus_how_to_read_it(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("case_id,patient_id,image,mask,label,split,liver_labels,Modality,phase\n"
                                    'c1,p1,i1.nii.gz,m1.nii.gz,cirrhosis,test,"1,2",MR,PV\n')
    [case], _ = discover_inputs(tmp_path / "m.csv", modality="ct")
    assert case.row == read_manifest(tmp_path / "m.csv", check_files=False)[0]
    assert (case.kind, case.run_modality, case.modality, case.contrast_phase, case.image_domain) == (
        "nifti", "ct", "MR", "portal-venous", "real")
    # what the record holds is read through it, never copied
    assert {f.name for f in fields(CaseInput)} == {"row", "kind", "files", "run_modality", "spacing", "output_format",
                                                   "channels_axis"}
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    [found], _ = discover_inputs([tmp_path / "a.nii.gz"])
    assert found.row == ManifestRow("a", "", tmp_path / "a.nii.gz")  # no patient id: records keep none


def test_manifest_modality_and_image_domain(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(
        "case_id,image,Modality,severity,site_scale,site_offset,site_noise,site_artifact\n"
        "c1,i1.nii.gz,MR-T2,0.2,1,0,1,0\n"
        "c2,i2.nii.gz,,0.1,1,0,1,0\n"
    )
    cases, _ = discover_inputs(tmp_path / "m.csv", modality="ct")
    assert [(c.modality, c.run_modality, c.image_domain) for c in cases] == [
        ("MR-T2", "ct", "phantom"), (None, "ct", "phantom")]
    (tmp_path / "d.csv").write_text("case_id,image,source,severity\nr1,i1.nii.gz,hospital A,0.2\n"
                                    "r2,i2.nii.gz,Phantom,0.1\nr3,i3.nii.gz,,0.1\n")
    assert [c.image_domain for c in discover_inputs(tmp_path / "d.csv")[0]] == ["real", "phantom", "real"]
    (tmp_path / "s.csv").write_text("case_id,image,modality,contrast,spacing_x,spacing_z,shape\n"
                                    "synth_0,i1.nii.gz,mr,t2,1.5,4,96x120x30\n")  # the randomised phantom
    assert [c.image_domain for c in discover_inputs(tmp_path / "s.csv")[0]] == ["phantom"]


def test_folder_and_file_cases_are_real_and_carry_the_run_modality(tmp_path: Path) -> None:
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    cases, _ = discover_inputs(tmp_path, modality="mr")
    assert [(c.modality, c.run_modality, c.image_domain) for c in cases] == [(None, "mr", "real")]
    assert discover_inputs(tmp_path)[0][0].run_modality is None

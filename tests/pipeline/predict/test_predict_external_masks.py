"""predict with another tool's masks as stage 1: the real TotalSegmentator outputs, statistics, bad masks."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from livercad.cli import app

REAL = next((p for p in (Path(__file__).resolve().parents[3].parent / "shared" / "realdata",
                         Path("/work/shared/realdata")) if p.is_dir()), Path("/work/shared/realdata"))
pytestmark = pytest.mark.skipif(not (REAL / "ct_abdomen_3mm_crop.nii.gz").is_file(), reason="real scans not available")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scans/ (the CT crop and the MR), multi/ (TotalSegmentator multi-label files), per/ (per-structure)."""
    root = tmp_path_factory.mktemp("ext")
    for sub in ("scans", "multi", "per/crop"):
        (root / sub).mkdir(parents=True)
    shutil.copy(REAL / "ct_abdomen_3mm_crop.nii.gz", root / "scans" / "crop.nii.gz")
    shutil.copy(REAL / "mr_abdomen_3mm.nii.gz", root / "scans" / "mr.nii.gz")
    shutil.copy(REAL / "ct_abdomen_3mm_crop_totalseg.nii.gz", root / "multi" / "crop.nii.gz")
    shutil.copy(REAL / "mr_abdomen_3mm_totalseg.nii.gz", root / "multi" / "mr.nii.gz")
    shutil.copy(REAL / "ct_abdomen_3mm_crop_totalseg_fast" / "liver.nii.gz", root / "per" / "crop" / "liver.nii.gz")
    return root


def test_totalsegmentator_masks_are_the_written_masks_with_statistics(folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["predict", "-i", str(folders / "scans"), "-o", str(out), "--masks",
                                   str(folders / "multi"), "--mask-labels", "total", "--quiet"])
    assert res.exit_code == 0, res.output
    for cid, ml in (("crop", "ct_abdomen_3mm_crop_totalseg.nii.gz"), ("mr", "mr_abdomen_3mm_totalseg.nii.gz")):
        written = np.asarray(nib.load(out / "masks" / f"{cid}.nii.gz").dataobj)
        np.testing.assert_array_equal(written > 0, np.asarray(nib.load(REAL / ml).dataobj) == 5)
    rows = {r["case_id"]: r for r in csv.DictReader((out / "predictions.csv").open())}
    crop = rows["crop"]
    assert crop["mask_source"] == "totalsegmentator" and crop["contrast_phase"] == "unknown"
    liver, spleen = float(crop["liver_mean"]), float(crop["spleen_mean"])
    assert 0 < float(crop["spleen_volume_ml"]) < float(crop["liver_volume_ml"])
    assert abs(float(crop["liver_minus_spleen"]) - (liver - spleen)) < 1e-6
    assert rows["mr"]["intensity_unit"] == "au" and rows["mr"]["modality"] == "mr"
    run = json.loads((out / "run.json").read_text())
    assert run["stage1"]["source"] == "external" and run["stage1"]["labels"]["liver"] == 5


def test_per_structure_folders_and_a_mask_off_the_grid(folders: Path, tmp_path: Path) -> None:
    from livercad.pipeline.predict.run import run_pipeline

    bad = folders / "per" / "mr"
    bad.mkdir(exist_ok=True)
    img = nib.load(REAL / "mr_abdomen_3mm_liver.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine @ np.diag([1.0, 1.0, 1.1, 1.0])), bad / "liver.nii.gz")
    res = run_pipeline(folders / "scans", tmp_path / "o", masks=folders / "per", progress=False)
    by = {c.case_id: c for c in res.cases}
    ref = np.asarray(nib.load(REAL / "ct_abdomen_3mm_crop_totalseg_fast" / "liver.nii.gz").dataobj) > 0
    np.testing.assert_array_equal(np.asarray(nib.load(by["crop"].mask_path).dataobj) > 0, ref)
    assert by["crop"].spleen_volume_ml is None  # a per-structure folder without spleen.nii.gz
    assert by["mr"].error is not None and "affine differs" in by["mr"].error and "\n" not in by["mr"].error
    failures = list(csv.DictReader((tmp_path / "o" / "failures.csv").open()))
    assert [f["case_id"] for f in failures] == ["mr"]


def test_mask_options_that_cannot_work_are_one_line_usage_errors(folders: Path, tmp_path: Path) -> None:
    for args, message in ((["--mask-labels", "total"], "needs external masks"),
                          (["--masks", str(folders / "multi"), "--engine", "ray"], "local engine"),
                          (["--masks", str(tmp_path / "none")], "external mask folder not found"),
                          (["--masks", "manifest"], "no row has an external_mask")):
        res = CliRunner().invoke(app, ["predict", "-i", str(folders / "scans"), "-o", str(tmp_path / "o"), *args])
        assert res.exit_code == 2 and message in res.output, (args, res.output)


def test_a_segmentation_only_bundle_with_external_masks_prepares_no_image(
        folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a classifier there is no stage-2 input to build: the image is never resized to model space."""
    from livercad.pipeline.predict.run import run_pipeline
    from livercad.segment.infer import Segmenter

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was prepared for a model that runs nothing")

    monkeypatch.setattr(Segmenter, "prepare", refuse)
    res = run_pipeline(folders / "scans" / "crop.nii.gz", tmp_path / "o", masks=folders / "per", progress=False)
    case = res.cases[0]
    assert case.ok and case.mask_source == "external" and case.liver_volume_ml > 0

"""Acceptance tests of "Clinical files in and out": a real compressed CT series end to end against dcm2niix and
the DICOM geometry itself, a PNG frame through stage-1 training and prediction, and a folder of bad series
failing case by case while the good one is written."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEGLSLossless, RLELossless

from livercad.io.dicom import load_dicom_series
from livercad.io.dicom_seg import read_dicom_seg
from livercad.io.dicom_synth import write_series
from livercad.pipeline.predict.run import run_pipeline

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT5N = TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"  # a real 5-slice CT series (16 x 16, uncompressed)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SMALL = ["preprocess.image_size=32", "segment.model.encoder=resnet18", "segment.model.encoder_weights=none",
         "classify.weights=none", "classify.backbone=resnet18",
         "classify.image_size=32", "classify.classes=[normal, cirrhosis]", "inference.backend=torch",
         "inference.precision=fp32", "inference.qc_images=false", "inference.coarse_to_fine=false"]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["case_id"]: r for r in csv.DictReader(path.open())}


def _dcm2niix() -> str | None:
    """The dcm2niix executable: the venv's (pip package ``dcm2niix``), else one on PATH."""
    try:
        import dcm2niix

        exe = Path(dcm2niix.__file__).parent / "dcm2niix"
        if exe.is_file():
            return str(exe)
    except ImportError:
        pass
    return shutil.which("dcm2niix")


def _corners_from_tags(path: Path) -> tuple[np.ndarray, int, int]:
    """RAS world positions (mm) of the four corner pixels of one file, from IPP / IOP / PixelSpacing alone.

    Pixel (row r, column c) lies at IPP + c * PixelSpacing[1] * IOP[:3] + r * PixelSpacing[0] * IOP[3:] (LPS,
    PS3.3 C.7.6.2.1.1). Returned in the order (r, c) = (0, 0), (0, C-1), (R-1, 0), (R-1, C-1).
    """
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    ps = np.asarray(ds.PixelSpacing, float)
    rows, cols = int(ds.Rows), int(ds.Columns)
    corners = [ipp + c * ps[1] * iop[:3] + r * ps[0] * iop[3:] for r in (0, rows - 1) for c in (0, cols - 1)]
    return np.stack(corners) @ LPS_TO_RAS.T, rows, cols


def _compress(source: Path, out: Path, syntax: str) -> list[Path]:
    out.mkdir(parents=True)
    files = []
    for f in sorted(source.iterdir()):
        ds = pydicom.dcmread(f)
        ds.compress(syntax, generate_instance_uid=False)
        files.append(out / f"{f.name}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless], ids=["rle", "jpeg-ls"])
def test_real_compressed_ct_series_predicts_on_the_dcm2niix_grid(tmp_path: Path, make_bundle: Callable[..., Path],
                                                                 syntax: str) -> None:
    """pydicom's CT5N re-encoded losslessly: mask NIfTI on dcm2niix's grid and on the tags' own world
    coordinates (every slice's corners, 1e-3 mm), DICOM-SEG equal to the NIfTI mask, modality ct from the tag."""
    enc = _compress(CT5N, tmp_path / "in" / "ct5n", syntax)
    assert {str(pydicom.dcmread(f).file_meta.TransferSyntaxUID) for f in enc} == {syntax}
    out = tmp_path / "out"
    res = run_pipeline(tmp_path / "in", out, model=make_bundle(classifier=False), modality=None,
                       output_format="both", progress=False)
    [case] = res.cases
    assert case.ok and res.all_ok, case.error
    img = nib.load(case.mask_path)
    affine, shape, mask = img.affine, img.shape, np.asarray(img.dataobj)
    assert shape == (16, 16, 5) and img.get_data_dtype() == np.uint8
    assert 0 < mask.sum() < mask.size  # the random segmenter marks some voxels: the comparisons below bite

    # the world position of every slice's corner voxels, computed from each file's own tags
    ijk_seen = []
    for f in sorted(CT5N.iterdir()):
        corners, rows, cols = _corners_from_tags(f)
        ijk = np.linalg.solve(affine[:3, :3], corners[0] - affine[:3, 3])  # the top-left pixel's voxel
        k = int(round(ijk[2]))
        np.testing.assert_allclose(ijk, [0, rows - 1, k], atol=1e-4)
        ijk_seen.append(k)
        voxels = np.array([[0, rows - 1, k], [cols - 1, rows - 1, k], [0, 0, k], [cols - 1, 0, k]], float)
        np.testing.assert_allclose(voxels @ affine[:3, :3].T + affine[:3, 3], corners, atol=1e-3)
    assert sorted(ijk_seen) == list(range(shape[2]))

    # the same affine and shape as dcm2niix's conversion of the uncompressed series, and the same voxels
    vol = load_dicom_series(tmp_path / "in" / "ct5n")
    exe = _dcm2niix()
    if exe is not None:
        ref_dir = tmp_path / "dcm2niix"
        ref_dir.mkdir()
        subprocess.run([exe, "-z", "y", "-b", "n", "-f", "ref", "-o", str(ref_dir), str(CT5N)], check=True,
                       capture_output=True, timeout=60)
        ref = nib.load(ref_dir / "ref.nii.gz")
        assert ref.shape == shape
        np.testing.assert_allclose(affine, ref.affine, atol=1e-3)
        np.testing.assert_array_equal(vol.data, np.asarray(ref.dataobj, np.float32))  # same grid, voxel for voxel

    # the DICOM-SEG read back equals the NIfTI mask voxel for voxel
    assert Path(case.seg_path).is_file()
    np.testing.assert_array_equal(read_dicom_seg(case.seg_path, vol), mask > 0)
    row = _rows(out / "predictions.csv")[case.case_id]
    assert (row["modality"], row["modality_source"], row["input_format"]) == ("ct", "case", "dicom")
    assert row["mask_path"] == case.mask_path and row["seg_path"] == case.seg_path
    record = json.loads((out / "cases" / f"{case.case_id}.json").read_text())
    assert record["image_record"]["transfer_syntax"] == pydicom.uid.UID(syntax).name


def _png_cohort(folder: Path) -> list:
    """Four phantom ultrasound frames as 8-bit PNGs, each with a NIfTI mask on ``load_image(png)``'s grid."""
    from PIL import Image

    from livercad.io.image import load_image
    from livercad.io.manifest import ManifestRow
    from livercad.io.nifti import load_mask, save_mask
    from livercad.phantom import make_case

    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        case = make_case(f"us{i}", modality="us", shape=(64, 64, 1), seed=i)
        img = case.image[:, :, 0].astype(np.float64)
        grey = np.rint(255 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)
        png = folder / f"us{i}.png"
        Image.fromarray(np.ascontiguousarray(grey[:, ::-1].T)).save(png)  # rows top-down, columns = axis 0
        volume = load_image(png)
        assert volume.shape == (64, 64, 1)
        np.testing.assert_array_equal(volume.data[:, :, 0], grey)
        mask = save_mask(case.mask, volume, folder / f"us{i}_mask.nii.gz")
        assert load_mask(mask, volume).sum() == case.mask.astype(bool).sum() > 0
        rows.append(ManifestRow(f"us{i}", f"p{i}", png, mask, split=split, extra={"modality": "us"}))
    return rows


def test_png_frame_trains_a_segmenter_and_is_predicted(tmp_path: Path) -> None:
    from livercad.config import load_config
    from livercad.pipeline.bundle import write_bundle
    from livercad.runtime.checkpoint import load_checkpoint
    from livercad.segment.fit import train_segmenter

    (tmp_path / "data").mkdir()
    rows = _png_cohort(tmp_path / "data")
    cfg = load_config(None, [*SMALL, "preprocess.modality=us", "segment.train.batch_size=4",
                             "segment.train.steps_per_epoch=2", "segment.train.max_epochs=1",
                             "segment.train.max_minutes=30", "segment.train.seed=5"])
    seg = train_segmenter(rows, cfg, tmp_path / "train", progress=False, max_steps=2)
    _, meta = load_checkpoint(seg)
    assert meta["preprocessing"]["modality"] == "us" and meta["history"]["n_train_cases"] == 2
    bundle = write_bundle(tmp_path / "bundle", segmenter=seg, classifier=None, config=cfg)

    png = rows[3].image
    out = tmp_path / "out"
    res = run_pipeline(png, out, model=bundle, modality="us", spacing=(0.3, 0.3), progress=False)
    [case] = res.cases
    assert case.ok, case.error
    img = nib.load(case.mask_path)
    assert img.shape == (64, 64, 1) and img.get_data_dtype() == np.uint8
    mask = np.asarray(img.dataobj)
    row = _rows(out / "predictions.csv")[case.case_id]
    assert (row["modality"], row["input_format"], row["spacing_known"]) == ("us", "png", "true")
    assert row["liver_area_cm2"] != ""
    assert float(row["liver_area_cm2"]) == pytest.approx(mask.sum() * 0.3 * 0.3 / 100, rel=1e-4, abs=1e-6)
    assert row["liver_volume_ml"] == ""  # a PNG has no slice thickness


FRAMES = np.random.default_rng(3).integers(0, 1400, (6, 24, 24)).astype(np.int16)


def _bad_folder(root: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """A good series and five bad ones (each its own series) plus an SR; case id -> (path it names, words)."""
    def series(sub: str, desc: str, number: int, frames: np.ndarray = FRAMES, **kw) -> list[Path]:
        return write_series(frames, root / sub, series_description=desc, series_number=number, seed=None,
                            intercept=-1024.0, pixel_spacing=(0.8, 0.8), slice_step=2.0, **kw)

    series("good", "good", 1)
    bad: dict[str, tuple[Path, tuple[str, ...]]] = {}
    gap = series("gap", "gap", 2)
    gap[3].unlink()
    bad["gap_s2"] = (root / "gap", ("missing slice: gap of 4.000 mm", "gap"))
    uid = pydicom.uid.generate_uid()
    series("dup/echo1", "dup", 3, series_uid=uid)
    series("dup/echo2", "dup", 3, series_uid=uid)
    bad["dup_s3"] = (root / "dup", ("duplicate slice position",))
    tilt = 15.0
    series("tilt", "tilt", 4, slice_dir=(0, np.sin(np.radians(tilt)), np.cos(np.radians(tilt))),
           extra={"GantryDetectorTilt": tilt})
    bad["tilt_s4"] = (root / "tilt", ("gantry tilt of 15.00 degrees",))
    trunc = series("trunc", "trunc", 5, frames=np.zeros((4, 64, 64), np.int16))
    raw = trunc[2].read_bytes()
    trunc[2].write_bytes(raw[: int(len(raw) * 0.9)])
    bad["trunc_s5"] = (trunc[2], ("truncated or corrupt pixel data",))
    syntax = series("syntax", "syntax", 6)
    ds = pydicom.dcmread(syntax[2])
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7"
    ds.save_as(syntax[2], implicit_vr=False, little_endian=True)
    bad["syntax_s6"] = (syntax[2], ("transfer syntax 1.2.3.4.5.6.7",))
    shutil.copy(get_testdata_file("test-SR.dcm", download=False), root / "report.dcm")
    return bad


def test_each_bad_series_fails_alone_with_one_line_and_the_good_one_is_written(
        tmp_path: Path, make_bundle: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    bad = _bad_folder(tmp_path / "in")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        res = run_pipeline(tmp_path / "in", out, model=make_bundle(classifier=False), progress=False)
    by_id = {c.case_id: c for c in res.cases}
    assert sorted(by_id) == sorted(["good_s1", *bad])  # the SR is no case
    good = by_id["good_s1"]
    assert good.ok, good.error
    assert nib.load(good.mask_path).shape == (24, 24, 6)
    assert _rows(out / "predictions.csv").keys() == {"good_s1"}
    assert not res.all_ok
    failures = _rows(out / "failures.csv")
    assert failures.keys() == bad.keys()  # every bad series, and the SR is not a failure
    for case_id, (named, words) in bad.items():
        reason = failures[case_id]["reason"]
        assert "\n" not in reason and reason == by_id[case_id].error
        assert reason.startswith(str(named)), (case_id, reason)
        for word in words:
            assert word in reason, (case_id, reason)
    assert "report.dcm" not in (out / "failures.csv").read_text()
    assert any("report.dcm" in r.getMessage() and "SR" in r.getMessage() for r in caplog.records)  # listed

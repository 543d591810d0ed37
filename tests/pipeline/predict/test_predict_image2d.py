"""PNG/JPEG images through run_pipeline: modality required, spacing given or unknown, RGB, 2-D DICOM spacing."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from livercad.io.dicom_synth import write_single_frame
from livercad.io.image2d import load_image2d
from livercad.pipeline.predict.run import run_pipeline

US_PREPROCESSING = {"modality": "us", "modalities": ["ct", "us"], "image_size": 32, "ct_window": [-160.0, 240.0],
                    "percentiles": [0.5, 99.5], "context": 1, "orientation": "RAS"}


@pytest.fixture
def us_bundle(make_bundle: Callable[..., Path]) -> Path:
    """A random bundle whose segmenter takes CT and ultrasound."""
    return make_bundle("us", seg_meta={"preprocessing": US_PREPROCESSING}, overrides=["inference.qc_images=true"])


def _frame(seed: int = 0) -> np.ndarray:
    """An ultrasound-like 8-bit frame: a bright fan-shaped region with speckle on black."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:48, 0:64]
    fan = np.hypot(rows + 10, cols - 32) < 55
    return (fan * np.clip(rng.normal(110, 30, (48, 64)), 0, 255)).astype(np.uint8)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["case_id"]: r for r in csv.DictReader(path.open())}


def test_png_with_and_without_spacing(tmp_path: Path, us_bundle: Path) -> None:
    Image.fromarray(_frame()).save(tmp_path / "us.png")
    with_sp = run_pipeline(tmp_path / "us.png", tmp_path / "a", model=us_bundle, progress=False, modality="us",
                           spacing=(0.3, 0.25))
    without = run_pipeline(tmp_path / "us.png", tmp_path / "b", model=us_bundle, progress=False, modality="us")
    a, b = with_sp.cases[0], without.cases[0]
    assert a.ok and b.ok, (a.error, b.error)
    vol = load_image2d(tmp_path / "us.png", spacing=(0.3, 0.25))
    img = nib.load(a.mask_path)
    assert img.shape == (64, 48, 1) and np.allclose(img.affine, vol.affine)
    n = int(np.asarray(img.dataobj).sum())
    assert (a.modality, a.modality_source, a.input_format, a.spacing_known) == ("us", "run", "png", True)
    assert a.liver_area_cm2 == pytest.approx(n * 0.3 * 0.25 / 100) and a.liver_volume_ml is None
    assert (b.spacing_known, b.liver_area_cm2, b.liver_volume_ml) == (False, None, None)
    assert 0 < n < 64 * 48, "the random segmenter should mark part of the frame"
    assert b.intensity_unit == "au" and b.liver_mean == a.liver_mean is not None  # no spacing needed
    assert a.image_record["spacing_source"] == "given" and b.image_record["spacing_source"] == "unknown"
    row = _rows(tmp_path / "b" / "predictions.csv")["us"]
    assert (row["spacing_known"], row["liver_area_cm2"], row["liver_volume_ml"]) == ("false", "", "")
    assert json.loads((tmp_path / "b" / "cases" / "us.json").read_text())["spacing_known"] is False
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["n_spacing_unknown"] == 1
    assert (tmp_path / "a" / "qc" / "us.png").is_file()


def test_2d_images_without_a_modality_are_refused_with_a_hint(tmp_path: Path, us_bundle: Path,
                                                              ct_volume: Callable[..., Path]) -> None:
    Image.fromarray(_frame()).save(tmp_path / "us.png")
    write_single_frame(_frame(1), tmp_path / "frame.dcm", modality="OT", extra={"SeriesDescription": "frame"})
    ct_volume(tmp_path / "ct.nii.gz")
    res = run_pipeline(tmp_path, tmp_path / "out", model=us_bundle, progress=False)
    by_id = {c.case_id: c for c in res.cases}
    assert by_id["ct"].ok and {c.case_id for c in res.failures} == {"us", "frame_s1"}
    for cid, path in (("us", tmp_path / "us.png"), ("frame_s1", tmp_path / "frame.dcm")):
        error = by_id[cid].error
        assert error.startswith(str(path)) and "pass --modality us" in error and "\n" not in error
    assert "DICOM Modality tag 'OT'" in by_id["frame_s1"].error


def test_rgb_jpeg_and_a_dicom_frame_take_the_run_spacing(tmp_path: Path, us_bundle: Path) -> None:
    grey = _frame(2)
    rgb = np.stack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.5).astype(np.uint8)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.jpg", quality=95)
    write_single_frame(grey, tmp_path / "us.dcm", modality="US",  # no PixelSpacing: takes the run's
                       extra={"SeriesDescription": "us"})
    res = run_pipeline(tmp_path, tmp_path / "out", model=us_bundle, progress=False, spacing=(0.5, 0.5),
                       modality="us", output_format="both")
    by_id = {c.case_id: c for c in res.cases}
    jpg, dcm = by_id["colour"], by_id["us_s1"]
    assert jpg.ok and dcm.ok, (jpg.error, dcm.error)
    assert jpg.input_format == "jpeg" and jpg.image_record["colour"] == "luminance" and jpg.note is not None
    assert (dcm.modality_source, dcm.spacing_known, dcm.image_record["spacing_source"]) == ("case", True, "given")
    assert nib.load(dcm.mask_path).header.get_zooms()[:2] == pytest.approx((0.5, 0.5))
    assert dcm.seg_path is not None and Path(dcm.seg_path).is_file()

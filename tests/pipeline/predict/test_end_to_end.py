"""End to end: bundle -> predict a folder (mixed orientations + broken files) -> outputs, exit codes, resume."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from livercad.cli import app
from livercad.pipeline.predict.run import run_pipeline
from livercad.pipeline.training.orchestrate import PipelineTraining

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed_folder(tiny_trained: PipelineTraining, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test-split phantom volumes (stored in several orientations) plus four broken files."""
    folder = tmp_path_factory.mktemp("mixed")
    rows = [r for r in tiny_trained.rows][:4]
    for r in rows:
        shutil.copy(r.image, folder / Path(r.image).name)
    good = Path(rows[0].image).read_bytes()
    (folder / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "notnifti.nii").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 400)
    four_d = nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4))
    nib.save(four_d, folder / "fourd.nii.gz")
    return folder


def _orientations(folder: Path) -> set[str]:
    out = set()
    for f in folder.glob("*.nii.gz"):
        try:
            out.add("".join(nib.aff2axcodes(nib.load(f).affine)))
        except Exception:  # noqa: BLE001 - broken files in the folder
            continue
    return out


def test_predict_folder_masks_on_input_grid_and_failures(tiny_bundle: Path, mixed_folder: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "pred"
    res = CliRunner().invoke(app, ["predict", "--model", str(tiny_bundle), "-i", str(mixed_folder),
                                   "-o", str(out), "--quiet"])
    assert res.exit_code == 3, res.output
    failures = {r["case_id"]: r["reason"] for r in csv.DictReader((out / "failures.csv").open())}
    assert set(failures) == {"truncated", "empty", "notnifti", "fourd"}
    assert all(reason and "\n" not in reason for reason in failures.values())
    assert "4-D" in failures["fourd"] and "empty" in failures["empty"]
    preds = list(csv.DictReader((out / "predictions.csv").open()))
    good = sorted(f.name.removesuffix(".nii.gz") for f in mixed_folder.glob("*.nii.gz")
                  if f.name.removesuffix(".nii.gz") not in failures)
    assert sorted(p["case_id"] for p in preds) == good
    for cid in good:
        img = nib.load(mixed_folder / f"{cid}.nii.gz")
        mask = nib.load(out / "masks" / f"{cid}.nii.gz")
        assert mask.shape == img.shape
        np.testing.assert_array_equal(mask.affine, img.affine)
        assert mask.get_data_dtype() == np.uint8
        assert int(mask.header["sform_code"]) == int(img.header["sform_code"])
        assert (out / "qc" / f"{cid}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for p in preds:
        probs = [float(p["prob_normal"]), float(p["prob_cirrhosis"])]
        assert abs(sum(probs) - 1) < 1e-4 and p["predicted_label"] in ("normal", "cirrhosis")
        # phantom CT files given as a folder: CT by the intensity rule; not known to be phantom images, so the
        # phantom-trained classifier's verdict is flagged
        assert (p["modality"], p["modality_source"], p["intensity_unit"]) == ("ct", "intensity-rule", "HU")
        assert (p["image_domain"], p["verdict_status"]) == ("real", "out-of-domain")
        assert float(p["liver_volume_ml"]) >= 0 and "liver_mean" in p and "liver_sd" in p
    run = json.loads((out / "run.json").read_text())
    assert run["n_ok"] == len(good) and run["n_failed"] == 4 and run["bundle_sha256"]
    assert run["domain"] == {"segment": "phantom", "classify": "phantom", "images": ["real"]}
    assert {c["case_id"] for c in run["cases"] if c["modality"] == "ct"} >= set(good)
    from livercad.runtime.backend import onnx_available  # auto = ONNX Runtime for fp32 on the CPU where it imports

    want = "onnx" if run["precision"] == "fp32" and onnx_available() else "torch"
    assert run["backend"] == {"requested": "auto", "segmenter": want, "classifier": want}
    html = (out / "report.html").read_text()
    assert "its verdicts on real scans are not validated" in html
    assert "http://" not in html and "https://" not in html and "data:image/png;base64," in html
    assert len(_orientations(mixed_folder)) >= 1


def test_manifest_run_matches_cli_and_resume_skips(tiny_trained: PipelineTraining, tiny_bundle: Path,
                                                   tmp_path: Path) -> None:
    from livercad.io.manifest import write_manifest

    manifest = write_manifest(tiny_trained.rows, tmp_path / "m.csv") or tmp_path / "m.csv"
    api = run_pipeline(tmp_path / "m.csv", tmp_path / "api", model=tiny_bundle, progress=False)
    assert api.all_ok and api.metrics["segmentation"]["dice"]["n"] == len(api.cases)
    # the phantom's manifest: its modality column decides, its columns mark the images as phantom
    assert {(c.modality, c.modality_source, c.image_domain, c.verdict_status) for c in api.cases} == {
        ("ct", "case", "phantom", "ok")}
    assert "classification" in api.metrics
    res = CliRunner().invoke(app, ["predict", "--model", str(tiny_bundle), "-i", str(tmp_path / "m.csv"),
                                   "-o", str(tmp_path / "cli"), "--quiet"])
    assert res.exit_code == 0, res.output
    cli_metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert json.loads((tmp_path / "api" / "metrics.json").read_text()) == cli_metrics
    before = (tmp_path / "api" / "masks").stat().st_mtime_ns
    again = run_pipeline(tmp_path / "m.csv", tmp_path / "api", model=tiny_bundle, progress=False, resume=True)
    run = json.loads((tmp_path / "api" / "run.json").read_text())
    assert run["timing"]["cases_run"] == 0 and run["timing"]["cases_resumed"] == len(api.cases)
    assert [c.probabilities for c in again.cases] == [c.probabilities for c in api.cases]
    assert (tmp_path / "api" / "masks").stat().st_mtime_ns == before
    assert manifest is not None


def test_single_file_and_gz_content(tiny_trained: PipelineTraining, tiny_bundle: Path, tmp_path: Path) -> None:
    src = Path(tiny_trained.rows[0].image)
    res = run_pipeline(src, tmp_path / "one", model=tiny_bundle, progress=False)
    assert [c.case_id for c in res.cases] == [src.name.removesuffix(".nii.gz")]
    with gzip.open(tmp_path / "one" / "masks" / src.name) as fh:
        assert len(fh.read()) > 348

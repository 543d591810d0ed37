"""Segmentation-only bundles, the default model, training domains and out-of-domain verdicts."""

from __future__ import annotations

import csv
import inspect
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import livercad
import livercad.models
from livercad.cli import app
from livercad.domain import config_domain
from livercad.errors import CheckpointError
from livercad.pipeline.bundle import load_bundle, training_domain
from livercad.pipeline.predict.case_stats import liver_intensity
from livercad.pipeline.predict.run import run_pipeline

PHANTOM_HEADER = "case_id,image,label,severity,site_scale,site_offset,site_noise,site_artifact"


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_segmentation_only_bundle_writes_loads_and_predicts(tmp_path: Path, make_bundle: Callable[..., Path],
                                                            ct_volume: Callable[..., Path]) -> None:
    path = make_bundle(classifier=False)
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["stages"] == ["segment"] and meta["classes"] == [] and "classifier" not in meta
    assert set(meta["sha256"]) == {"segmenter.pt", "config.yaml"} and not (path / "classifier.pt").exists()
    b = load_bundle(path)
    assert not b.has_classifier and b.classes == [] and b.classifier_path is None
    scan = ct_volume(tmp_path / "scan.nii.gz")
    res = run_pipeline(scan, tmp_path / "out", model=path, progress=False, config=_cfg(tmp_path, report=True))
    case = res.cases[0]
    assert case.ok and case.predicted_label is None and case.probabilities == {}
    assert case.verdict_status == "no-classifier" and case.liver_volume_ml is not None
    row = _rows(tmp_path / "out" / "predictions.csv")[0]
    assert not any(k.startswith("prob_") for k in row) and row["predicted_label"] == ""
    assert row["verdict_status"] == "no-classifier" and row["intensity_unit"] == "HU"
    assert {"liver_mean", "liver_median", "liver_sd", "liver_volume_ml"} <= set(row)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["stages"] == ["segment"] and run["domain"]["classify"] is None
    assert run["backend"]["classifier"] is None
    assert "no classifier" in (tmp_path / "out" / "report.html").read_text()


def test_the_predictor_records_what_its_stages_run_with(make_bundle: Callable[..., Path]) -> None:
    from livercad.config import InferenceConfig
    from livercad.pipeline.predict.predictor import Predictor, StagesUsed

    inference = InferenceConfig(backend="torch", precision="fp32")
    both = Predictor(load_bundle(make_bundle()), inference)
    used = both.used
    assert used == StagesUsed("fp32", "torch", "torch", "torch", ("ct",))
    assert used.backends == {"requested": "torch", "segmenter": "torch", "classifier": "torch"}
    lean = Predictor(load_bundle(make_bundle("seg_only", classifier=False)), inference)
    seg_only = lean.used
    assert seg_only.classifier_backend is None and seg_only.backends["classifier"] is None
    # stage 1 builds the stage-2 input only for a bundle that classifies (Stage1Options.slices)
    assert both.stage1_options.slices and not lean.stage1_options.slices


def _cfg(tmp_path: Path, *, report: bool) -> Path:
    from livercad.config import load_config, save_config

    path = tmp_path / f"inference_{report}.yaml"
    cfg = load_config(None, ["inference.backend=torch", "inference.precision=fp32", "inference.qc_images=false",
                             "inference.coarse_to_fine=false", f"inference.report={str(report).lower()}"])
    save_config(cfg, path)
    return path


def test_rewriting_a_bundle_without_classifier_drops_the_old_one(make_bundle: Callable[..., Path]) -> None:
    from livercad.config import load_config
    from livercad.pipeline.bundle import write_bundle

    path = make_bundle()
    assert load_bundle(path).has_classifier
    seg = path.parent / "seg_copy.pt"
    seg.write_bytes((path / "segmenter.pt").read_bytes())
    write_bundle(path, segmenter=seg, config=load_config(None, ["segment.model.encoder_weights=none"]))
    assert not (path / "classifier.pt").exists() and not load_bundle(path).has_classifier


def test_default_model_missing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  ct_volume: Callable[..., Path]) -> None:
    monkeypatch.setattr(livercad.models, "DEFAULT_BUNDLE", tmp_path / "models" / "liver")
    scan = ct_volume(tmp_path / "scan.nii.gz")
    with pytest.raises(CheckpointError, match="default liver model is not installed.*make model.*--model"):
        run_pipeline(scan, tmp_path / "out", progress=False)
    res = CliRunner().invoke(app, ["predict", "-i", str(scan), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and line.startswith("error:") and "make model" in line


def test_default_model_is_used_without_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             make_bundle: Callable[..., Path], ct_volume: Callable[..., Path]) -> None:
    monkeypatch.setattr(livercad.models, "DEFAULT_BUNDLE", make_bundle("liver", classifier=False))
    scan = ct_volume(tmp_path / "scan.nii.gz")
    res = CliRunner().invoke(app, ["predict", "-i", str(scan), "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert Path(run["bundle"]) == (tmp_path / "liver").resolve()
    assert _rows(tmp_path / "out" / "predictions.csv")[0]["verdict_status"] == "no-classifier"


def test_package_run_pipeline_shows_the_real_signature() -> None:
    from livercad.pipeline.predict.run import run_pipeline as real

    assert livercad.run_pipeline is real and inspect.signature(livercad.run_pipeline) == inspect.signature(real)
    assert "modality" in inspect.signature(livercad.run_pipeline).parameters
    assert livercad.run_pipeline.__doc__ and "model" in livercad.run_pipeline.__doc__


def test_training_domain_rules(tmp_path: Path, manifest_csv: Callable[..., Path]) -> None:
    phantom = manifest_csv(tmp_path / "ph.csv", PHANTOM_HEADER, ["a,a.nii.gz,normal,0.1,1,0,1,0"])
    real = manifest_csv(tmp_path / "real.csv", "case_id,image,label,site", ["a,a.nii.gz,normal,A"])
    tagged = manifest_csv(tmp_path / "tag.csv", "case_id,image,domain", ["a,a.nii.gz,synthetic"])
    assert config_domain(None) == "phantom" and config_domain(phantom) == "phantom"
    assert config_domain(real) == "real" and config_domain(tagged) == "phantom"
    assert config_domain(tmp_path / "missing.csv") == "unknown"
    assert training_domain({"training_domain": "real", "config": {"data": {"manifest": None}}}) == "real"
    assert training_domain({"config": {"data": {"manifest": str(real)}}}) == "real"
    assert training_domain({"config": {"classes": ["a"]}}) == "unknown"


def test_bundle_records_the_domain_of_each_stage(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle("a", seg_meta={"training_domain": "real"}, clf_meta={"training_domain": "phantom"})
    assert json.loads((path / "bundle.json").read_text())["domain"] == {"segment": "real", "classify": "phantom"}
    assert load_bundle(path).domain == {"segment": "real", "classify": "phantom"}
    # no training_domain in the checkpoints: the training config decides (data.manifest null = the phantom)
    assert load_bundle(make_bundle("b")).domain == {"segment": "phantom", "classify": "phantom"}
    seg_only = make_bundle("c", classifier=False, seg_meta={"training_domain": "unknown"})
    assert load_bundle(seg_only).domain == {"segment": "unknown", "classify": None}


def test_out_of_domain_verdicts_are_flagged(tmp_path: Path, make_bundle: Callable[..., Path],
                                            ct_volume: Callable[..., Path],
                                            manifest_csv: Callable[..., Path]) -> None:
    bundle = make_bundle(clf_meta={"training_domain": "phantom"})
    ct_volume(tmp_path / "p.nii.gz")
    ct_volume(tmp_path / "r.nii.gz", seed=1)
    ph = manifest_csv(tmp_path / "ph.csv", PHANTOM_HEADER, ["p,p.nii.gz,normal,0.1,1,0,1,0"])
    res = run_pipeline(ph, tmp_path / "ph_out", model=bundle, progress=False, config=_cfg(tmp_path, report=True))
    assert [(c.image_domain, c.verdict_status) for c in res.cases] == [("phantom", "ok")]
    assert "not validated" not in (tmp_path / "ph_out" / "report.html").read_text()
    res = run_pipeline(tmp_path / "r.nii.gz", tmp_path / "r_out", model=bundle, progress=False,
                       config=_cfg(tmp_path, report=True))
    case = res.cases[0]
    assert (case.image_domain, case.verdict_status) == ("real", "out-of-domain")
    assert case.predicted_label in ("normal", "cirrhosis") and abs(sum(case.probabilities.values()) - 1) < 1e-4
    row = _rows(tmp_path / "r_out" / "predictions.csv")[0]
    assert row["verdict_status"] == "out-of-domain" and row["prob_cirrhosis"] and row["image_domain"] == "real"
    run = json.loads((tmp_path / "r_out" / "run.json").read_text())
    assert run["domain"] == {"segment": "phantom", "classify": "phantom", "images": ["real"]}
    assert run["verdict_status"] == {"out-of-domain": 1}
    page = (tmp_path / "r_out" / "report.html").read_text()
    assert "trained on synthetic phantom data only; its verdicts on real scans are not validated" in page
    assert "classifier trained on" in page


def test_cli_summary_counts_out_of_domain_verdicts(tmp_path: Path, make_bundle: Callable[..., Path],
                                                   ct_volume: Callable[..., Path]) -> None:
    bundle = make_bundle(clf_meta={"training_domain": "phantom"})
    scan = ct_volume(tmp_path / "r.nii.gz")
    res = CliRunner().invoke(app, ["predict", "-m", str(bundle), "-i", str(scan), "-o", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0 and "1 verdicts out-of-domain" in res.output


def test_liver_intensity_erodes_two_voxels() -> None:
    img = np.zeros((12, 12, 12), np.float32)
    mask = np.zeros(img.shape, np.uint8)
    mask[2:10, 2:10, 2:10] = 1
    img[mask > 0] = 500.0  # the rim eroded away carries 500, the core 40 +- 10
    img[4:8, 4:8, 4:8] = np.tile([30.0, 50.0], 32).reshape(4, 4, 4)
    got = liver_intensity(img, mask, "ct")
    assert got == {"liver_mean": 40.0, "liver_median": 40.0, "liver_sd": pytest.approx(np.std([30, 50] * 32, ddof=1)),
                   "intensity_unit": "HU"}
    assert liver_intensity(img, mask, "mr")["intensity_unit"] == "au"
    small = np.zeros(img.shape, np.uint8)
    small[5:8, 5:8, 5:8] = 1  # nothing survives a 2-voxel erosion
    assert liver_intensity(img, small, "ct")["liver_mean"] is None
    assert liver_intensity(img, np.zeros_like(mask), "ct")["liver_mean"] is None
    lopsided = mask.copy()
    lopsided[2:4, 2:10, 5:10] = 0  # not symmetric: a transposition error would show
    expected = liver_intensity(img, lopsided, "ct")
    assert liver_intensity(np.asfortranarray(img), np.asfortranarray(lopsided), "ct") == expected  # file order


def test_liver_intensity_of_a_single_frame_erodes_in_plane() -> None:
    img = np.full((10, 10, 1), 7.0, np.float32)
    mask = np.zeros(img.shape, np.uint8)
    mask[1:9, 1:9, 0] = 1
    assert liver_intensity(img, mask, "us")["liver_mean"] == 7.0

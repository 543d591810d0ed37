"""The shipped-model machinery: float16 export, the model card, ``segment.init`` (as is / fine-tuned)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import livercad.models
from livercad.config import load_config
from livercad.errors import CheckpointError
from livercad.runtime.checkpoint import load_checkpoint, save_checkpoint
from livercad.segment.infer import Segmenter, segment_volume
from livercad.segment.release import half_checkpoint, write_card
from livercad.types import Volume


def _random_pt(path: Path) -> Path:
    seg = Segmenter.random(image_size=32, encoder="resnet18", precision="fp32")
    meta = {**seg.meta, "history": {"steps": 7, "best_step": 5, "best_val_dice": 0.5}, "seed": 0,
            "training_domain": "phantom", "phantom": {"n": 4, "randomise": True}}
    return save_checkpoint(path, seg.model.state_dict(), meta)


def test_half_checkpoint_stores_float16_and_predicts_like_float32(tmp_path):
    src = _random_pt(tmp_path / "segmenter.pt")
    dst = half_checkpoint(src, tmp_path / "half.pt", {"release": {"commit": "abc"}})
    state, meta = load_checkpoint(dst)
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert meta["stored_dtype"] == "float16" and meta["release"]["commit"] == "abc"
    assert dst.stat().st_size < 0.6 * src.stat().st_size
    vol = Volume(np.random.default_rng(0).normal(0, 200, (32, 32, 4)).astype(np.float32), np.eye(4), None, (1, 1, 1))
    p32 = segment_volume(Segmenter.load(src, precision="fp32", backend="torch"), vol).prob_model
    p16 = segment_volume(Segmenter.load(dst, precision="fp32", backend="torch"), vol).prob_model
    assert float((p32 - p16).abs().max()) < 0.02


def test_model_card_says_phantom_only_and_carries_the_measured_figures(tmp_path):
    from livercad.pipeline.bundle import write_bundle

    half = half_checkpoint(_random_pt(tmp_path / "s.pt"), tmp_path / "h.pt",
                           {"release": {"commit": "abc", "wall_seconds": 12.0, "n_cases": 4, "n_train_cases": 3}})
    bundle = write_bundle(tmp_path / "liver", segmenter=half, classifier=None,
                          config=load_config(None, ["preprocess.image_size=32", "segment.model.encoder=resnet18",
                                                    "segment.model.encoder_weights=none", "classify.weights=none"]))
    text = write_card(bundle).read_text()
    assert "Trained on the phantom only" in text and "not measured" in text and "12.0 s" in text
    assert "waist cut True" in text
    results = {"date": "d", "commit": "c", "real": {"ct": {"status": "ok", "dice": 0.91, "hd95_mm": 9.0,
                                                          "msd_inplane_mm": 2.0, "volume_error_rel": -0.03},
                                                   "mr": {"status": "refused"}},
               "phantom": {"ct": {"status": "ok", "dice": {"n": 2, "mean": 0.95, "min": 0.94}}}}
    text = write_card(bundle, results).read_text()
    assert "| ct | 0.910 | 9.0 | 2.0 | -3.0 % |" in text and "| mr | refused" in text and "0.950 (min 0.940)" in text
    assert json.loads((bundle / "bundle.json").read_text())["stages"] == ["segment"]
    assert "4 randomised phantom cases (3 train)" in text


def test_model_card_counts_the_classic_anchor_cases_apart():
    from livercad.segment.release import _cases

    ph = {"n": 600, "randomise": True, "anchor": 150, "modality": "ct", "ct_phase": "portal-venous"}
    assert _cases({"n_cases": 750}, ph).startswith("600 randomised phantom cases and 150 classic phantom ct cases")
    assert _cases({"n_cases": 600}, {"n": 600, "randomise": True}) == "600 randomised phantom cases"


def test_segmenter_checkpoint_resolves_default_bundles_and_files(tmp_path, monkeypatch):
    (tmp_path / "b").mkdir()
    pt = _random_pt(tmp_path / "b" / "segmenter.pt")
    assert livercad.models.segmenter_checkpoint(tmp_path / "b") == pt
    assert livercad.models.segmenter_checkpoint(pt) == pt
    monkeypatch.setattr(livercad.models, "DEFAULT_BUNDLE", tmp_path / "missing")
    with pytest.raises(CheckpointError, match="default liver model is not installed.*make model"):
        livercad.models.segmenter_checkpoint("default")
    monkeypatch.setattr(livercad.models, "DEFAULT_BUNDLE", tmp_path / "b")
    assert livercad.models.segmenter_checkpoint("default") == pt
    with pytest.raises(CheckpointError, match="no segmenter checkpoint"):
        livercad.models.segmenter_checkpoint(tmp_path / "nothing.pt")


def test_init_weights_are_loaded_and_a_mismatch_is_one_line(tmp_path):
    from livercad.config import SegmentModelConfig
    from livercad.segment.model import build_segmenter, load_init_weights

    pt = _random_pt(tmp_path / "segmenter.pt")
    model = build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none"))
    info = load_init_weights(model, str(pt))
    state, _ = load_checkpoint(pt)
    assert info["source"] == "segmenter" and len(info["sha256"]) == 64
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(CheckpointError, match="do not fit segment.model"):
        load_init_weights(build_segmenter(SegmentModelConfig(encoder="resnet34", encoder_weights="none")), str(pt))


def test_train_stage1_uses_an_init_model_as_it_is_without_training(tmp_path, monkeypatch):
    import livercad.pipeline.training.orchestrate as ptrain
    import livercad.segment.fit as strain

    pt = _random_pt(tmp_path / "segmenter.pt")
    monkeypatch.setattr(ptrain, "cohort_rows", lambda cfg, out: [])
    monkeypatch.setattr(ptrain, "stage1_cache", lambda seg, rows, cfg: [])
    monkeypatch.setattr(strain, "train_segmenter", lambda *a, **k: pytest.fail("must not train"))
    # package default weights (imagenet, offline here): the init model replaces them, so none is resolved
    cfg = load_config(None, [f"segment.init={pt}", "segment.finetune=false", "inference.backend=torch"])
    out = ptrain.train_stage1(cfg, tmp_path / "run", progress=False)
    assert out.checkpoint == pt and out.segmenter.meta["training_domain"] == "phantom"


def test_the_model_build_checks_encoder_weights_before_making_the_cohort(tmp_path, monkeypatch):
    from livercad.errors import WeightsUnavailableError
    from livercad.segment import release

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached; conftest sets LIVERCAD_OFFLINE=1
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "model.yaml")
    cfg.segment.model.encoder_weights = "imagenet"
    made: list[str] = []
    monkeypatch.setattr("livercad.pipeline.training.orchestrate.cohort_rows", lambda *a: made.append("cohort"))
    with pytest.raises(WeightsUnavailableError):
        release.build(cfg, tmp_path / "work", tmp_path / "out", tmp_path)
    assert made == [] and not (tmp_path / "work").exists()

"""ImageNet weights are resolved before any data work: offline, a training command fails in seconds (exit 2, one
line naming the file and the folder) and leaves no cohort behind; the package default is imagenet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from livercad.cli import app
from livercad.config import load_config
from livercad.errors import ConfigError, WeightsUnavailableError
from livercad.pipeline.training.preflight import classify_family, ensure_run_weights

runner = CliRunner()
NONE = ["segment.model.encoder_weights=none", "classify.weights=none"]


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, with empty torch/Hugging Face caches under tmp_path (a machine's own caches never answer)."""
    monkeypatch.setenv("LIVERCAD_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "LIVERCAD_WEIGHTS_DIR", "LIVERCAD_WEIGHTS_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _no_data_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.pipeline.training.orchestrate as orchestrate

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("data work started before the weights were resolved")

    monkeypatch.setattr(orchestrate, "cohort_rows", refuse)
    monkeypatch.setattr(orchestrate, "train_stage1", refuse)


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ImageNet weights for "), output
    return lines[0]


def test_train_segment_offline_fails_in_seconds_naming_file_and_folder_before_any_data(
        empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_data_work(monkeypatch)
    out = empty_caches / "run"
    start = time.perf_counter()
    res = runner.invoke(app, ["train", "segment", "--out", str(out), "--set", "segment.model.encoder_weights=imagenet"])
    elapsed = time.perf_counter() - start
    assert res.exit_code == 2 and elapsed < 5.0, (res.output, elapsed)
    line = _one_line_error(res.output)
    folder = empty_caches / "hf" / "hub" / "models--smp-hub--resnet34.imagenet" / "snapshots"
    assert "'resnet34'" in line and "LIVERCAD_OFFLINE=1" in line
    assert "place the file model.safetensors" in line and str(folder) in line
    assert not (out / "data").exists() and not (out / "work").exists()


def test_train_pipeline_checks_stage_2_weights_before_stage_1_runs(
        empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_data_work(monkeypatch)
    out = empty_caches / "run"
    start = time.perf_counter()
    res = runner.invoke(app, ["train", "pipeline", "--out", str(out), "--set", "segment.model.encoder_weights=none",
                              "--set", "classify.weights=imagenet"])
    elapsed = time.perf_counter() - start
    assert res.exit_code == 2 and elapsed < 5.0, (res.output, elapsed)
    line = _one_line_error(res.output)
    assert "'resnet50'" in line and "resnet50-11ad3fa6.pth" in line
    assert str(empty_caches / "torch" / "hub" / "checkpoints") in line
    assert not (out / "data").exists() and not (out / "work").exists()


def test_train_classify_checks_its_weights_before_reading_the_segmenter(empty_caches: Path) -> None:
    res = runner.invoke(app, ["train", "classify", "--segmenter", str(empty_caches / "missing.pt"), "--out",
                              str(empty_caches / "cls"), "--set", "classify.backbone=resnet18"])
    assert res.exit_code == 2
    assert "'resnet18'" in _one_line_error(res.output) and "resnet18-f37072fd.pth" in res.output


@pytest.mark.slow
def test_train_segment_offline_from_the_shell_is_quick_and_leaves_no_data(empty_caches: Path) -> None:
    """The real command line (imports included): before, the cohort was generated first (28 s on 2 cores)."""
    out = empty_caches / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "train", "segment", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    assert "'resnet34'" in _one_line_error(proc.stdout + proc.stderr)  # the package default: imagenet
    assert not (out / "data").exists()
    assert elapsed < 15.0, elapsed  # ~4.3 s measured on 2 idle cores (imports of torch and smp); slack for load


def test_defaults_are_imagenet_and_offline_they_fail_at_the_first_stage_checked(empty_caches: Path) -> None:
    cfg = load_config(None)
    with pytest.raises(WeightsUnavailableError, match="'resnet34'"):
        ensure_run_weights(cfg, segment=True)
    with pytest.raises(WeightsUnavailableError, match="'resnet50'"):
        ensure_run_weights(cfg, classify=True)


def test_segment_init_replaces_the_encoder_weights_so_none_are_resolved(empty_caches: Path) -> None:
    cfg = load_config(None, ["segment.init=default"])  # imagenet by default, offline: not needed, not checked
    assert ensure_run_weights(cfg, segment=True) == {}


def test_ablation_checks_each_backbone_once_and_scratch_arms_need_none(empty_caches: Path) -> None:
    seen: list[tuple[str, str, str]] = []
    import livercad.pipeline.training.preflight as preflight

    def fake(spec: str, *, family: str, name: str, check: bool = True):  # noqa: ANN202
        seen.append((spec, family, name))
        return preflight.WeightsInfo("random" if spec == "none" else "imagenet")

    cfg = load_config(None, ["ablation.backbones=[resnet18, resnet18, test_resnet]",
                             "ablation.strategies=[frozen, scratch]"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(preflight, "ensure_weights", fake)
        ensure_run_weights(cfg, ablation=True)
        assert seen == [("imagenet", "torchvision", "resnet18"), ("imagenet", "timm", "test_resnet")]
        seen.clear()
        ensure_run_weights(load_config(None, ["ablation.strategies=[scratch]"]), ablation=True)
        assert seen == []
    with pytest.raises(ConfigError, match="scratch.*classify.weights: none"):
        ensure_run_weights(load_config(None, ["classify.strategy=scratch"]), classify=True)
    with pytest.raises(ConfigError, match="unknown backbone 'resnet5'"):
        classify_family("resnet5")


def test_an_init_segmenter_is_trained_on_without_resolving_the_encoder_weights(empty_caches: Path) -> None:
    from livercad.runtime.budget import TimeBudget
    from livercad.runtime.checkpoint import save_checkpoint
    from livercad.segment.infer import Segmenter
    from livercad.segment.module import SegmentationModule

    seg = Segmenter.random(image_size=32, encoder="resnet18")
    pt = save_checkpoint(empty_caches / "segmenter.pt", seg.model.state_dict(), seg.meta)
    cfg = load_config(None, ["segment.model.encoder=resnet18", f"segment.init={pt}"])  # encoder_weights: imagenet
    module = SegmentationModule(cfg, n_val_cases=1, budget=TimeBudget(60.0, 1, 10))
    assert module.weights_info.source == "random" and module.init["source"] == "segmenter"
    assert all(torch.equal(module.model.state_dict()[k], v) for k, v in seg.model.state_dict().items())


def test_demo_weights_are_none_unless_the_config_names_them() -> None:
    from livercad.pipeline.training.demo import demo_config

    for fast in (False, True):
        cfg = demo_config(fast)
        assert (cfg.segment.model.encoder_weights, cfg.classify.weights) == ("none", "none")
    cfg = demo_config(False, "segment", ["classify.weights=imagenet"])
    assert (cfg.segment.model.encoder_weights, cfg.classify.weights) == ("none", "imagenet")
    assert ensure_run_weights(demo_config(True, overrides=NONE), segment=True, classify=True, ablation=True)

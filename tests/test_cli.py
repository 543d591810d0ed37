"""CLI: help texts, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from livercad.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [[], ["predict"], ["train"], ["train", "segment"], ["phantom"], ["demo"],
                                 ["ablate"], ["evaluate"], ["convert"]])
def test_every_command_has_help(cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_missing_bundle_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nobundle"), "-i", str(tmp_path),
                              "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "not a livercad model bundle" in res.output


def test_bad_config_key_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "segment", "--out", str(tmp_path), "-s", "segment.model.encodr=x"])
    assert res.exit_code == 2 and "unknown key 'segment.model.encodr'" in res.output


def test_console_entry_exit_code_and_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "predict", "--model", str(tmp_path),
                           "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "\n" not in proc.stderr.strip()
    assert "Traceback" not in proc.stderr


def test_unknown_option_is_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "livercad.cli", "predict", "--bogus"], capture_output=True,
                          text=True)
    assert proc.returncode == 2


def test_phantom_command_writes_a_deterministic_cohort(tmp_path: Path) -> None:
    args = ["phantom", "--n", "3", "--modality", "ct", "--seed", "1", "--size", "48x48x10"]
    a = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    b = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.parts[0] == "images"]) == 3
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_train_scale_out_options_reach_the_train_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.pipeline.train as ptrain
    import livercad.segment.train as strain

    seen: dict[str, object] = {}
    monkeypatch.setattr(ptrain, "cohort_rows", lambda cfg, out: [])
    monkeypatch.setattr(strain, "train_segmenter", lambda rows, cfg, out, **kw: seen.setdefault("segment", cfg))
    monkeypatch.setattr(ptrain, "train_pipeline", lambda cfg, out, **kw: seen.setdefault("pipeline", cfg) and {
        "bundle": out})
    opts = ["--devices", "2", "--num-nodes", "3", "--strategy", "ddp", "--out", str(tmp_path)]
    for cmd in ("segment", "pipeline"):
        res = runner.invoke(app, ["train", cmd, *opts, "-s", "segment.train.devices=1"])
        assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["train", "segment", "--num-nodes", "0", "--out", str(tmp_path)]).exit_code == 2
    seg, pipe = seen["segment"].segment.train, seen["pipeline"]
    assert (seg.devices, seg.num_nodes, seg.strategy) == (2, 3, "ddp")  # the option wins over --set
    t = pipe.segment.train
    assert (t.devices, t.num_nodes, t.strategy) == (2, 3, "ddp")
    t = pipe.classify.train  # stage 2 trains in one process: `train pipeline` scales out stage 1 only
    assert (t.devices, t.num_nodes, t.strategy) == (1, 1, "auto")


@pytest.mark.parametrize("cmd", ["predict", "evaluate"])
def test_predict_and_evaluate_take_modality_and_an_optional_model(cmd: str) -> None:
    res = runner.invoke(app, [cmd, "--help"], terminal_width=200)
    assert res.exit_code == 0 and "--modality" in res.output and "--model" in res.output
    params = {p.name: p for p in typer.main.get_command(app).commands[cmd].params}  # type: ignore[attr-defined]
    assert not params["model"].required and params["modality"].default is None


def test_predict_without_model_and_no_default_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import livercad.pipeline.bundle as bundle

    monkeypatch.setattr(bundle, "DEFAULT_BUNDLE", tmp_path / "not_installed")
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    res = runner.invoke(app, ["predict", "-i", str(tmp_path / "a.nii.gz"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "default liver model is not installed" in res.output and "--model" in res.output

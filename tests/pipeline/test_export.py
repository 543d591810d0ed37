"""livercad export: both stages of a bundle as ONNX and TorchScript, checked against torch on a phantom case."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from livercad.errors import ConfigError
from livercad.pipeline import export


@pytest.mark.parametrize("fmt", ["onnx"])  # torchscript: the CLI test below
def test_both_stages_export_and_match_torch(make_bundle: Callable[..., Path], tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    results = export.export_bundle(make_bundle(), tmp_path / "out", fmt)
    assert [r.stage for r in results] == ["segmenter", "classifier"]
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert record["format"] == fmt and len(record["stages"]) == 2
    for r in results:
        assert r.ok and r.max_abs_diff <= export.TOLERANCE and r.agreement == 1.0
        assert (tmp_path / "out" / r.file).stat().st_size > 1000
    assert results[0].input_shape[1:] == [3, 32, 32]  # 2.5-D stacks at the segmenter's size


def test_a_diverging_export_is_reported_failed(make_bundle: Callable[..., Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = export._run_exported
    monkeypatch.setattr(export, "_run_exported", lambda data, x, fmt: real(data, x, fmt) + 1.0)
    results = export.export_bundle(make_bundle(classifier=False), tmp_path / "out", "torchscript")
    assert [r.ok for r in results] == [False] and results[0].max_abs_diff > export.TOLERANCE
    assert json.loads((tmp_path / "out" / "export.json").read_text())["stages"][0]["ok"] is False


def test_unknown_format_is_refused_before_the_bundle_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not one of onnx, torchscript"):
        export.export_bundle(tmp_path / "no-bundle", tmp_path, "tflite")


def test_cli_export_prints_each_stage_and_writes_the_record(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from livercad.cli import app

    res = CliRunner().invoke(app, ["export", "--model", str(make_bundle()), "-o", str(tmp_path / "x"),
                                   "--format", "torchscript", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "segmenter:" in res.output and "classifier:" in res.output
    assert "(ok: max probability difference" in res.output
    stages = json.loads((tmp_path / "x" / "export.json").read_text())["stages"]
    assert [s["ok"] for s in stages] == [True, True] and all(s["agreement"] == 1.0 for s in stages)
    # the file is a usable TorchScript module on its own
    module = torch.jit.load(str(tmp_path / "x" / "classifier.torchscript.pt"))
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 2)

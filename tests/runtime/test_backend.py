"""Inference backends (issue 7 item 2): ONNX Runtime vs eager torch on trained weights, selection and caching.

Accuracy guard: with the tiny trained bundle, ONNX Runtime fp32 vs torch fp32 give post-processed masks
with Dice >= 0.995, probability maps within 1e-3 and case probabilities within 0.01 (both stages).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import livercad.runtime.backend as backend
from livercad.classify.infer import Classifier, predict_case
from livercad.config import InferenceConfig, load_config
from livercad.errors import ConfigError
from livercad.io.manifest import ManifestRow
from livercad.io.nifti import load_volume
from livercad.pipeline.stage1 import case_slices
from livercad.pipeline.training.orchestrate import PipelineTraining
from livercad.segment.infer import Segmenter, segment_volume

pytest.importorskip("onnxruntime")

N_CASES = 2


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ONNX cache dir and an empty in-process session cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(backend, "_SESSIONS", {})
    return tmp_path / "livercad" / "onnx"


@pytest.fixture(scope="module")
def bundle_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Like ``cache``, shared by the tests of this module that load the tiny bundle (exported once)."""
    root = tmp_path_factory.mktemp("onnx_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        mp.setattr(backend, "_SESSIONS", {})
        yield root / "livercad" / "onnx"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    den = int(a.sum()) + int(b.sum())
    return 1.0 if den == 0 else 2.0 * int(np.logical_and(a, b).sum()) / den


def _run(bundle: Path, name: str, images: list[Path]) -> tuple[list[tuple[np.ndarray, ...]], Segmenter, Classifier]:
    seg = Segmenter.load(bundle / "segmenter.pt", precision="fp32", device="cpu", backend=name)
    clf = Classifier.load(bundle / "classifier.pt", precision="fp32", device="cpu", backend=name)
    out = []
    for path in images:
        res = segment_volume(seg, load_volume(path), batch_size=3)  # 3 does not divide the slice count
        cs = case_slices(ManifestRow(path.name, path.name, path), res)
        logits = clf.logits(torch.linspace(-1, 1, 5 * 3 * 64 * 64).reshape(5, 3, 64, 64), batch_size=2)
        out.append((res.segmentation.mask, res.segmentation.prob, predict_case(clf, cs, batch_size=8),
                    logits.numpy()))
    return out, seg, clf


def test_onnx_matches_torch_on_trained_bundle(tiny_trained: PipelineTraining, bundle_cache: Path) -> None:
    bundle = Path(tiny_trained.bundle)
    before = sorted(p.name for p in bundle.rglob("*"))
    images = [Path(r.image) for r in tiny_trained.rows[:N_CASES]]
    ref, seg_t, clf_t = _run(bundle, "torch", images)
    fast, seg_o, clf_o = _run(bundle, "onnx", images)
    assert (seg_t.backend, clf_t.backend, seg_o.backend, clf_o.backend) == ("torch", "torch", "onnx", "onnx")
    assert seg_o.runner is not None and clf_o.runner is not None and seg_t.runner is None
    for (m_t, p_t, c_t, l_t), (m_o, p_o, c_o, l_o) in zip(ref, fast, strict=True):
        assert m_t.shape == m_o.shape and p_t.shape == p_o.shape
        assert _dice(m_t, m_o) >= 0.995
        assert float(np.abs(p_t - p_o).max()) <= 1e-3  # non-vacuous even when a mask is empty
        assert float(np.abs(c_t - c_o).max()) <= 0.01 and np.isclose(c_o.sum(), 1.0, atol=1e-5)
        assert l_o.shape == (5, len(clf_o.classes)) and float(np.abs(l_t - l_o).max()) <= 1e-3
    assert float(np.ptp(ref[0][3])) > 0  # the logits compared are not constant
    assert len(list(bundle_cache.glob("*.onnx"))) == 2  # one exported graph per checkpoint, outside the bundle
    assert sorted(p.name for p in bundle.rglob("*")) == before


def test_predictor_records_the_backend_used(tiny_bundle: Path, bundle_cache: Path) -> None:
    from livercad.pipeline.bundle import load_bundle
    from livercad.pipeline.predict.predictor import Predictor

    bundle = load_bundle(tiny_bundle)
    auto = Predictor(bundle, InferenceConfig(precision="fp32", backend="auto"))
    assert auto.used.backends == {"requested": "auto", "segmenter": "onnx", "classifier": "onnx"}
    assert auto.used.precision == "fp32"
    for stage in (auto.segmenter, auto.classifier):  # ONNX Runtime holds the weights; the torch copies are freed
        assert {p.device.type for p in stage.model.parameters()} == {"meta"}
    assert len(list(bundle_cache.glob("*.onnx"))) == 2  # the sessions of the first test were reused
    plain = Predictor(bundle, InferenceConfig(precision="fp32", backend="torch", channels_last=False))
    assert plain.used.segmenter_backend == plain.used.classifier_backend == "torch"
    assert plain.segmenter.channels_last is False
    assert {p.device.type for p in plain.classifier.model.parameters()} == {"cpu"}  # torch stages keep theirs


def test_release_torch_weights_keeps_onnx_results_and_refuses_torch_calls(cache: Path) -> None:
    torch.manual_seed(0)
    seg = Segmenter.random(image_size=32, encoder="resnet18", backend="onnx")
    eager = Segmenter.random(image_size=32, encoder="resnet18", backend="torch")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        before, ref = seg.forward(x), eager.model(x)
    assert backend.release_torch_weights(seg, eager) == 1
    assert backend.release_torch_weights(seg) == 0  # already released
    assert {p.device.type for p in seg.model.parameters()} == {"meta"}
    assert {p.device.type for p in eager.model.parameters()} == {"cpu"}
    with torch.inference_mode():
        after = seg.forward(x)
        assert torch.equal(after, before) and torch.allclose(after, ref, atol=1e-4)
        with pytest.raises(RuntimeError, match="released because it runs on ONNX Runtime"):
            seg.model(x)
    assert backend.release_free_memory() is (platform.libc_ver()[0] == "glibc")  # malloc_trim: glibc only


def test_auto_falls_back_to_torch_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "onnx_available", lambda: False)
    model, cpu = nn.Conv2d(1, 1, 3), torch.device("cpu")
    assert backend.select_backend("auto", model, (1, 1, 8, 8), device=cpu, precision="fp32") == ("torch", None)
    with pytest.raises(ConfigError, match=r"livercad\[onnx\]"):
        backend.select_backend("onnx", model, (1, 1, 8, 8), device=cpu, precision="fp32")


def test_onnx_refused_where_it_cannot_run() -> None:
    model, cpu = nn.Conv2d(1, 1, 3), torch.device("cpu")
    assert backend.select_backend("auto", model, (1, 1, 8, 8), device=cpu, precision="bf16") == ("torch", None)
    with pytest.raises(ConfigError, match="precision bf16"):
        backend.select_backend("onnx", model, (1, 1, 8, 8), device=cpu, precision="bf16")
    with pytest.raises(ConfigError, match="got 'tensorflow'"):
        backend.check_backend("tensorflow")
    with pytest.raises(ConfigError, match="backend"):
        load_config(None, ["inference.backend=tensorflow"])


def test_export_failure_falls_back_or_raises(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    def broken(model: nn.Module, example: torch.Tensor) -> bytes:
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(backend, "export_onnx", broken)
    model, cpu = nn.Conv2d(1, 1, 3), torch.device("cpu")
    assert backend.select_backend("auto", model, (1, 1, 8, 8), device=cpu, precision="fp32") == ("torch", None)
    with pytest.raises(ConfigError, match="frobnicate"):
        backend.select_backend("onnx", model, (1, 1, 8, 8), device=cpu, precision="fp32", what="segmenter")


def test_cache_dynamic_batch_lru_and_corrupt_entry(cache: Path) -> None:
    cache.mkdir(parents=True)
    stale = [cache / f"old{i}.onnx" for i in range(backend.CACHE_ENTRIES)]
    for i, old in enumerate(stale):
        old.write_bytes(b"x")
        os.utime(old, (1000.0 + i, 1000.0 + i))  # old0 is the least recently used
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)).eval()
    used, runner = backend.select_backend("onnx", model, (1, 2, 8, 8), device=torch.device("cpu"),
                                          precision="fp32", sha256="ab" * 32)
    assert used == "onnx" and runner is not None
    for n in (1, 3):
        x = torch.randn(n, 2, 8, 8)
        with torch.inference_mode():
            assert torch.allclose(runner(x), model(x), atol=1e-5)
    (entry,) = set(cache.glob("*.onnx")) - set(stale)
    assert sorted(cache.glob("*.onnx")) == sorted([entry, *stale[1:]])  # only the oldest entry was pruned
    entry.write_bytes(b"not an onnx graph")
    backend._SESSIONS.clear()
    _, again = backend.select_backend("onnx", model, (1, 2, 8, 8), device=torch.device("cpu"),
                                      precision="fp32", sha256="ab" * 32)
    x = torch.randn(2, 2, 8, 8)
    with torch.inference_mode():
        assert again is not None and torch.allclose(again(x), model(x), atol=1e-5)
    assert entry.stat().st_size > 100  # rebuilt in place


def test_resolve_precision_auto_follows_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend.resolve_precision("fp32") == "fp32" and backend.resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert backend.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert backend.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="fp16"):
        backend.resolve_precision("fp16")


def test_prune_leaves_a_writer_s_temporary_file_alone(tmp_path: Path) -> None:
    for i, name in enumerate(["a.onnx", "b.onnx", "c.onnx", ".d.tmp1234abcd.onnx"]):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (i, i))
    backend._prune(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.tmp1234abcd.onnx", "c.onnx"]

"""No network during training: the demo's training steps (phantom -> stage 1 -> stage 2 -> bundle) run
with every socket connection made to fail, and none is attempted."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from livercad.config import load_config
from livercad.pipeline.training.orchestrate import train_pipeline
from tests.conftest import TINY

pytestmark = pytest.mark.slow

MICRO = [*TINY, "data.phantom.n=6", "data.phantom.shape=[40, 40, 8]", "preprocess.image_size=32",
         "segment.model.encoder=tu-test_resnet", "classify.backbone=test_resnet", "classify.image_size=32"]


def test_training_never_touches_the_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[str] = []

    def refuse(name: str):  # noqa: ANN202
        def _refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
            raise OSError(f"network disabled by the test ({name})")
        return _refuse

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse(name))
    cfg = load_config(None, MICRO)
    assert cfg.segment.model.encoder_weights == "none" and cfg.classify.weights == "none"
    res = train_pipeline(cfg, tmp_path, progress=False)
    assert attempts == []
    assert (Path(res.bundle) / "bundle.json").is_file() and res.classifier.meta["steps"] == 2

"""The smp segmenter factory: names, channels, offline weights, first-conv adaptation."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest
import segmentation_models_pytorch as smp
import torch

from livercad.config import SegmentModelConfig
from livercad.errors import CheckpointError, ConfigError
from livercad.segment.model import build_segmenter, build_segmenter_with_info, in_channels_of


def _first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize(("context", "channels"), [(1, 3), (0, 1), (2, 5)])
def test_build_at_64_gives_one_logit_map_per_slice(context, channels):
    cfg = SegmentModelConfig(encoder="resnet18", encoder_weights="none", context=context)
    model = build_segmenter(cfg).eval()
    assert in_channels_of(cfg) == channels
    assert _first_conv(model).weight.shape[1] == channels
    with torch.no_grad():
        out = model(torch.randn(2, channels, 64, 64))
    assert tuple(out.shape) == (2, 1, 64, 64)


def test_default_is_unet_resnet34_with_imagenet_weights_and_none_is_random():
    assert (SegmentModelConfig().arch, SegmentModelConfig().encoder) == ("Unet", "resnet34")
    assert SegmentModelConfig().encoder_weights == "imagenet"  # the model card's choice (offline here: see below)
    model, info = build_segmenter_with_info(SegmentModelConfig(encoder_weights="none"))
    assert isinstance(model, smp.Unet)
    assert len(model.encoder.layer1) == 3 and len(model.encoder.layer3) == 6  # resnet34 block counts
    assert info.to_dict()["source"] == "random"


def test_unknown_encoder_suggests_the_closest_name():
    with pytest.raises(ConfigError) as err:
        build_segmenter(SegmentModelConfig(encoder="resnet35", encoder_weights="none"))
    msg = str(err.value)
    assert "unknown encoder 'resnet35'" in msg and "did you mean 'resnet34'?" in msg and "available:" in msg
    with pytest.raises(ConfigError, match="unknown architecture 'Unett'.*'unet'"):
        build_segmenter(SegmentModelConfig(arch="Unett", encoder="resnet18", encoder_weights="none"))


def _encoder_file(tmp_path, seed: int = 7) -> tuple[dict[str, torch.Tensor], str]:
    torch.manual_seed(seed)
    donor = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    state = {k: v.clone() for k, v in donor.state_dict().items()}
    path = tmp_path / "enc.pth"
    torch.save(state, path)
    return state, str(path)


def test_weights_from_file_are_loaded_and_recorded(tmp_path):
    state, path = _encoder_file(tmp_path)
    model, info = build_segmenter_with_info(SegmentModelConfig(encoder="resnet18", encoder_weights=path))
    got = model.encoder.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)
    assert info.source == "file" and info.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("context", [0, 2])
def test_first_conv_adapted_like_smp_patch_first_conv(tmp_path, context):
    state, path = _encoder_file(tmp_path)
    channels = 2 * context + 1
    model = build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights=path, context=context))
    reference = smp.encoders.get_encoder("resnet18", in_channels=3, weights=None)
    reference.load_state_dict(state)
    reference.set_in_channels(channels, pretrained=True)  # smp's own adaptation, the independent reference
    assert torch.allclose(model.encoder.conv1.weight, reference.conv1.weight)
    if channels == 1:
        assert torch.allclose(model.encoder.conv1.weight[:, 0], state["conv1.weight"].sum(1))


def test_incomplete_weights_file_is_refused(tmp_path):
    state, _ = _encoder_file(tmp_path)
    del state["layer4.1.bn2.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing"):
        build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights=str(tmp_path / "partial.pth")))


def test_imagenet_without_cache_fails_fast_and_offline(tmp_path, monkeypatch):
    for var in ("TORCH_HOME", "HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("LIVERCAD_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("LIVERCAD_OFFLINE", "1")  # no download try (network: tests/runtime/test_weights_download.py)
    import huggingface_hub.constants as hf_constants  # cache paths were fixed when huggingface_hub was imported

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    attempts: list[object] = []

    def no_network(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: no_network(None, a))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        build_segmenter(SegmentModelConfig(encoder="resnet34", encoder_weights="imagenet"))
    assert time.perf_counter() - start < 5.0
    msg = str(err.value)
    assert "resnet34" in msg and "not available offline" in msg and "place the file" in msg
    assert attempts == []


def test_decoder_channels_set_the_decoder_widths_and_bad_ones_are_refused():
    cfg = SegmentModelConfig(encoder="resnet18", encoder_weights="none", decoder_channels=[64, 32, 16, 8, 4])
    model = build_segmenter(cfg).eval()
    convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].out_channels == 4 and model.segmentation_head[0].in_channels == 4
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none")).parameters())
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 64, 64)).shape) == (1, 1, 64, 64)
    with pytest.raises(ConfigError, match="decoder_channels.*do not fit"):
        build_segmenter(SegmentModelConfig(encoder="resnet18", encoder_weights="none", decoder_channels=[64, 32]))
    with pytest.raises(ValueError, match="positive"):
        SegmentModelConfig(decoder_channels=[64, 0, 16, 8, 4])

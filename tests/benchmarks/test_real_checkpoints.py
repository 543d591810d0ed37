"""real_checkpoints: raw and EMA weights of a run's Lightning checkpoints scored on a tiny fake realdata folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from livercad.config import Config, PreprocessConfig, SegmentConfig, SegmentModelConfig
from livercad.segment.model import build_segmenter
from tests.benchmarks.test_accept_real import BENCHMARKS, _realdata


def test_raw_and_ema_weights_of_each_checkpoint_are_scored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import real_checkpoints

    cfg = Config(preprocess=PreprocessConfig(modality="ct", image_size=32),
                 segment=SegmentConfig(model=SegmentModelConfig(encoder="resnet18", encoder_weights="none")))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    net = build_segmenter(cfg.segment.model)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    folder = tmp_path / "work" / "segment" / "lightning" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"global_step": 7, "state_dict": state}, folder / "a.ckpt")
    ema = {f"ema.module.{k}": v for k, v in net.state_dict().items()}
    ema["ema.module.segmentation_head.0.bias"] = torch.full_like(ema["ema.module.segmentation_head.0.bias"], -100.0)
    torch.save({"global_step": 9, "state_dict": {**state, **ema}}, folder / "b.ckpt")
    step, sets = real_checkpoints.weight_sets(folder / "b.ckpt")
    assert step == 9 and set(sets) == {"raw", "ema"} and torch.equal(sets["raw"]["encoder.conv1.weight"],
                                                                   net.state_dict()["encoder.conv1.weight"])
    _realdata(tmp_path / "realdata")
    rows = real_checkpoints.main([str(tmp_path / "work"), "--config", str(tmp_path / "cfg.yaml"), "--sizes", "32",
                                  "--realdata", str(tmp_path / "realdata")])
    assert [r["step"] for r in rows] == [7, 9]
    assert set(rows[0]) == {"checkpoint", "step", "raw32_ct_crop", "raw32_mr"}  # the missing whole CT is left out
    assert {"ema32_ct_crop", "ema32_mr"} <= set(rows[1]) and all(0 <= rows[1][k] <= 1 for k in rows[1] if "32" in k)
    assert rows[1]["ema32_ct_crop"] == 0.0  # the EMA set (a head biased to background) is scored, not the raw one

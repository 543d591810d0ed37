"""Config validation, presets and overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from livercad.config import Config, config_to_dict, load_config, save_config
from livercad.errors import ConfigError

PRESETS = sorted(p.stem for p in (Path(__file__).parents[1] / "livercad" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_packaged_preset_validates(name: str) -> None:
    cfg = load_config(name)
    assert isinstance(cfg, Config)


def test_package_defaults_are_imagenet_resnet34_and_resnet50() -> None:
    cfg = load_config(None)
    assert (cfg.segment.model.encoder, cfg.segment.model.encoder_weights) == ("resnet34", "imagenet")
    assert (cfg.classify.backbone, cfg.classify.weights) == ("resnet50", "imagenet")


@pytest.mark.parametrize("name", PRESETS)
def test_every_packaged_preset_says_weights_none_explicitly(name: str) -> None:
    cfg = load_config(name)  # phantom recipes trained from random init, offline (the package default: imagenet)
    assert "encoder_weights" in cfg.segment.model.model_fields_set and cfg.segment.model.encoder_weights == "none"
    assert "weights" in cfg.classify.model_fields_set and cfg.classify.weights == "none"


def test_root_configs_folder_is_the_packaged_one() -> None:
    root = Path(__file__).parents[1]
    assert (root / "configs" / "segment.yaml").read_text() == (root / "livercad/configs/segment.yaml").read_text()


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("segment:\n  model:\n    encodr: resnet34\n")
    with pytest.raises(ConfigError, match=r"unknown key 'segment.model.encodr'") as info:
        load_config(p)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"'classify.image_size'"):
        load_config(None, ["classify.image_size=big"])


def test_overrides_apply_and_parse_yaml_scalars() -> None:
    cfg = load_config("segment", ["segment.train.max_minutes=1.25", "classify.classes=[normal, steatosis]"])
    assert cfg.segment.train.max_minutes == 1.25
    assert cfg.classify.classes == ["normal", "steatosis"]


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["segment.train.max_minutes"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(lst)


def test_save_and_reload_roundtrip(tmp_path: Path) -> None:
    cfg = load_config("classify", ["classify.region=crop"])
    path = save_config(cfg, tmp_path / "out.yaml")
    assert config_to_dict(load_config(path)) == config_to_dict(cfg)


def test_classes_must_be_distinct() -> None:
    with pytest.raises(ConfigError, match="distinct"):
        load_config(None, ["classify.classes=[normal, normal]"])


def test_ablation_overrides_default_to_the_classify_section() -> None:
    cfg = load_config(None)
    assert cfg.ablation.train is None and cfg.ablation.image_size is None
    assert load_config("ablation").ablation.train is None  # the preset only documents them (commented out)


def test_ablation_train_and_image_size_overrides(tmp_path: Path) -> None:
    cfg = load_config(None, ["ablation.image_size=64", "ablation.train.max_minutes=0.5",
                             "ablation.train.batch_size=4", "classify.train.lr=0.01"])
    assert cfg.ablation.image_size == 64 and cfg.classify.image_size == 224
    assert (cfg.ablation.train.max_minutes, cfg.ablation.train.batch_size) == (0.5, 4)
    assert type(cfg.ablation.train) is type(cfg.classify.train)  # same schema as classify.train
    assert cfg.ablation.train.lr == 1e-3 and cfg.classify.train.lr == 0.01  # a whole section: no per-key inheritance
    again = load_config(save_config(cfg, tmp_path / "a.yaml"))
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("override, key", [("ablation.image_size=16", "ablation.image_size"),
                                           ("ablation.train.max_epochs=0", "ablation.train.max_epochs"),
                                           ("ablation.train.epochs=3", "ablation.train.epochs")])
def test_ablation_override_errors_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}'") as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_retired_keys_are_refused_with_their_hint_in_a_user_config(tmp_path: Path) -> None:
    p = tmp_path / "old.yaml"
    p.write_text("ablation:\n  shortcut: true\ninference:\n  write_prob: false\n")
    with pytest.raises(ConfigError, match=r"retired key 'ablation.shortcut' \(use data.phantom.shortcut\)") as info:
        load_config(p)
    assert "retired key 'inference.write_prob'" in str(info.value) and "\n" not in str(info.value)


def test_retired_keys_of_an_older_bundle_config_are_dropped(tmp_path: Path) -> None:
    from livercad.config_keys import RETIRED_KEYS

    assert set(RETIRED_KEYS) == {"inference.write_prob", "inference.ray_address", "segment.model.extra_channels",
                                 "ablation.shortcut"}
    p = tmp_path / "config.yaml"
    p.write_text("segment:\n  model: {extra_channels: 0, context: 2}\ninference: {ray_address: null, batch_size: 3}\n")
    cfg = load_config(p, drop_retired_keys=True)
    assert cfg.segment.model.context == 2 and cfg.inference.batch_size == 3


def test_the_ct_window_is_one_constant() -> None:
    from livercad.config import CT_WINDOW, PERCENTILES, PreprocessConfig
    from livercad.preprocess.prepare import normalize, prepare
    from livercad.report.overlay import display_window

    pp = PreprocessConfig()
    assert CT_WINDOW == (-160.0, 240.0) and (pp.ct_window, pp.percentiles) == (CT_WINDOW, PERCENTILES)
    assert normalize.__kwdefaults__["ct_window"] is CT_WINDOW and prepare.__kwdefaults__["ct_window"] is CT_WINDOW
    assert display_window(np.zeros((4, 4)), "ct") == CT_WINDOW

"""Bundles record each setting once; bundles written by older versions still load."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from livercad.pipeline.bundle import RETIRED_BUNDLE_KEYS, load_bundle
from livercad.runtime.weights import sha256_file


def test_bundle_json_copies_no_setting_of_the_checkpoints_or_the_config(make_bundle: Callable[..., Path]) -> None:
    meta = json.loads((make_bundle() / "bundle.json").read_text())
    assert not set(RETIRED_BUNDLE_KEYS) & set(meta)
    assert {"stages", "classes", "domain", "modalities", "versions", "sha256"} <= set(meta)


def test_an_older_bundle_with_retired_keys_loads(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle()
    cfg = yaml.safe_load((path / "config.yaml").read_text())
    cfg["segment"]["model"]["extra_channels"] = 0
    cfg["inference"] |= {"write_prob": False, "ray_address": None}
    cfg["ablation"]["shortcut"] = False
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    meta = json.loads((path / "bundle.json").read_text())
    meta |= {"preprocess": cfg["preprocess"], "segment_model": cfg["segment"]["model"], "classifier": {}}
    meta["sha256"]["config.yaml"] = sha256_file(path / "config.yaml")
    (path / "bundle.json").write_text(json.dumps(meta))
    bundle = load_bundle(path)
    assert bundle.has_classifier and not set(RETIRED_BUNDLE_KEYS) & set(bundle.meta)
    assert bundle.config.inference.batch_size == cfg["inference"]["batch_size"]

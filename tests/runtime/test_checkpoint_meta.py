"""Typed checkpoint metadata: built from the config sections, read once, older checkpoints still readable."""

from __future__ import annotations

import pytest

from livercad.config import ClassifyConfig, Config, PostprocessConfig
from livercad.errors import CheckpointError
from livercad.runtime.checkpoint_meta import (
    RETIRED_META_KEYS,
    ClassifierMeta,
    Preprocessing,
    SegmenterMeta,
    read_meta,
)


def _segmenter(**changes: object) -> dict:
    cfg = Config(segment={"postprocess": {"threshold": 0.4}}, preprocess={"modality": "mr", "image_size": 64})
    return {**SegmenterMeta.build(cfg, modalities=["mr"], weights={"source": "random"}).to_dict(), **changes}


def test_segmenter_meta_comes_from_the_config_sections_and_round_trips() -> None:
    raw = _segmenter()
    info = read_meta(SegmenterMeta, raw, "s.pt")
    assert info.preprocessing == Preprocessing(modality="mr", modalities=["mr"], image_size=64, context=1)
    assert info.postprocess == PostprocessConfig(threshold=0.4) and info.in_channels == 3
    assert info.network().encoder == "resnet34" and info.training_domain == "phantom"
    assert read_meta(SegmenterMeta, info.to_dict(), "s.pt") == info


def test_older_segmenter_metadata_loads_with_defaults_and_retired_keys_dropped() -> None:
    assert RETIRED_META_KEYS == {"extra_channels": 0}
    old = {"kind": "segmenter", "arch": "Unet", "encoder": "resnet18", "context": 1, "extra_channels": 0,
           "preprocessing": {"modality": "ct", "image_size": 32}}
    info = read_meta(SegmenterMeta, old, "old.pt")
    assert info.preprocessing.modalities == ["ct"] and info.preprocessing.ct_window == (-160.0, 240.0)
    assert info.postprocess.threshold == 0.5 and info.weights == {"source": "unknown"}


@pytest.mark.parametrize(("raw", "match"), [
    ({"extra_channels": 2}, "extra_channels"),
    ({"in_channels": 5}, "extra input channels are not supported"),
    ({"kind": "classifier"}, "not a segmenter checkpoint"),
    ({"encodr": "resnet18"}, "encodr"),
    ({"preprocessing": {"image_size": "big"}}, "preprocessing.image_size"),
])
def test_segmenter_metadata_errors_name_the_file_and_key(raw: dict, match: str) -> None:
    with pytest.raises(CheckpointError, match=f"s.pt.*{match}"):
        read_meta(SegmenterMeta, _segmenter(**raw), "s.pt")


def test_classifier_meta_defaults_are_the_classify_section_defaults() -> None:
    info = read_meta(ClassifierMeta, {"kind": "livercad-classifier", "backbone": "resnet18", "classes": ["a", "b"],
                                      "region": "mask", "image_size": 32, "in_channels": 3}, "c.pt")
    d = ClassifyConfig()
    assert (info.aggregation, info.top_k, info.min_liver_fraction, info.crop_margin) == (
        d.aggregation, d.top_k, d.min_liver_fraction, d.crop_margin)
    built = ClassifierMeta.build(ClassifyConfig(region="crop", top_k=5), backbone="resnet18", family="torchvision",
                                 weights={"source": "random"}, in_channels=3, context=1, seed=3)
    assert (built.region, built.top_k, built.config["top_k"]) == ("crop", 5, 5)
    with pytest.raises(CheckpointError, match="not a livercad classifier checkpoint"):
        read_meta(ClassifierMeta, {"kind": "segmenter"}, "c.pt")


def test_multi_image_networks_record_their_images_in_both_checkpoints() -> None:
    cfg = Config(segment={"model": {"images": ["image", "image_noncontrast", "image_arterial"]}})
    info = read_meta(SegmenterMeta, SegmenterMeta.build(cfg, modalities=["ct"], weights={}).to_dict(), "s.pt")
    assert info.images == ["image", "image_noncontrast", "image_arterial"] and info.in_channels == 9
    assert info.network().images == info.images  # Segmenter.load rebuilds the 9-channel network
    assert read_meta(SegmenterMeta, _segmenter(), "s.pt").images == ["image"]  # older checkpoints: one image
    with pytest.raises(CheckpointError, match="in_channels 3 is not the 2.5-D stack of context 1 of 2 image"):
        read_meta(SegmenterMeta, _segmenter(images=["image", "image_pv"], in_channels=3), "s.pt")
    clf = ClassifierMeta.build(ClassifyConfig(), backbone="resnet18", family="torchvision", weights={},
                               in_channels=6, context=1, seed=0, images=["image", "image_pv"])
    assert read_meta(ClassifierMeta, clf.to_dict(), "c.pt").images == ["image", "image_pv"]


@pytest.mark.parametrize("images", [[], ["image_pv"], ["image", "image"], ["image", "phase"]])
def test_segment_model_images_are_image_first_then_image_columns(images: list[str]) -> None:
    from livercad.config import load_config
    from livercad.errors import ConfigError

    with pytest.raises(ConfigError, match="segment.model.images"):
        load_config(None, [f"segment.model.images={images}"])

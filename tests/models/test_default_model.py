"""The default stage-1 model shipped in the package: what it is, what it says about itself, that it works."""

from __future__ import annotations

import json

import numpy as np
import pytest

from livercad.models import default_bundle_path
from livercad.pipeline.bundle import load_bundle
from livercad.runtime.checkpoint import load_checkpoint

BUNDLE = default_bundle_path()
pytestmark = pytest.mark.skipif(not (BUNDLE / "segmenter.pt").is_file(), reason="default model not built")


def test_the_bundle_is_small_float16_segmentation_only_and_phantom_trained():
    bundle = load_bundle(BUNDLE)
    state, meta = load_checkpoint(BUNDLE / "segmenter.pt")
    assert (BUNDLE / "segmenter.pt").stat().st_size < 50 * 2**20
    assert {v.dtype.itemsize for v in state.values() if v.is_floating_point()} == {2}
    assert bundle.meta["stages"] == ["segment"] and bundle.meta["domain"]["segment"] == "phantom"
    assert meta["training_domain"] == "phantom" and meta["phantom"]["randomise"] is True
    assert sorted(meta["preprocessing"]["modalities"]) == ["ct", "mr"]
    assert meta["release"]["wall_seconds"] > 0 and meta["history"]["steps"] > 0


def test_the_model_card_states_phantom_only_training_and_its_provenance():
    card = (BUNDLE / "MODEL_CARD.md").read_text()
    meta = json.loads((BUNDLE / "bundle.json").read_text())
    assert "Trained on the phantom only" in card and "No real scan was used" in card
    assert f"commit {meta['release']['commit']}" in card and "steps" in card


@pytest.mark.parametrize(("modality", "family"), [("ct", "ct"), ("mr-t2", "mr")])
def test_it_finds_the_liver_of_a_phantom_case_it_never_saw(modality, family):
    from livercad.metrics.segmentation import dice
    from livercad.phantom import make_case
    from livercad.segment.infer import Segmenter, segment_volume
    from livercad.types import Volume

    case = make_case("t", modality=modality, seed=123_457, shape=(128, 128, 40), orientation="LPS")
    spacing = tuple(float(s) for s in np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0)))
    seg = Segmenter.load(BUNDLE / "segmenter.pt", precision="fp32", backend="torch")
    out = segment_volume(seg, Volume(case.image, case.affine, None, spacing), modality=family)
    assert dice(out.segmentation.mask.astype(bool), case.mask.astype(bool)) > 0.85


def test_its_settings_are_recorded_once_in_the_checkpoint():
    from livercad.config_keys import RETIRED_KEYS
    from livercad.pipeline.bundle import RETIRED_BUNDLE_KEYS
    from livercad.runtime.checkpoint_meta import SegmenterMeta, load_stage

    _, info = load_stage(BUNDLE / "segmenter.pt", SegmenterMeta)  # written before extra_channels was retired
    assert info.preprocessing.image_size == 192 and info.trained_image_size == 128
    assert not set(RETIRED_BUNDLE_KEYS) & set(json.loads((BUNDLE / "bundle.json").read_text()))
    config = (BUNDLE / "config.yaml").read_text()
    assert not any(f"{key.rsplit('.', 1)[1]}:" in config for key in RETIRED_KEYS if key != "ablation.shortcut")

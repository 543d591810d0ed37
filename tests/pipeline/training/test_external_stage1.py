"""Stage 2's data from other tools' masks: the manifest's external_mask column, beside or instead of stage 1."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from livercad.config import load_config
from livercad.errors import ConfigError
from livercad.io.manifest import read_manifest


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-case phantom CT cohort whose manifest names each case's ground truth as its external mask."""
    from livercad.phantom import generate_cohort

    root = tmp_path_factory.mktemp("ext_cohort")
    manifest = generate_cohort(root, n=3, shape=(48, 48, 8), classes=["normal", "cirrhosis"], seed=2)
    rows = list(csv.DictReader(manifest.open()))
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, [*rows[0], "external_mask"])
        w.writeheader()
        w.writerows({**r, "external_mask": r["mask"]} for r in rows)
    return manifest


def _stage1(cohort: Path, tmp_path: Path, *extra: str) -> list:
    from livercad.pipeline.training.orchestrate import load_stage1, stage1_cache
    from livercad.runtime.checkpoint import save_checkpoint
    from livercad.segment.infer import Segmenter

    seg = Segmenter.random(image_size=32, encoder="resnet18")
    path = save_checkpoint(tmp_path / "segmenter.pt", seg.model.state_dict(), seg.meta)
    cfg = load_config(None, ["preprocess.image_size=32", "classify.classes=[normal, cirrhosis]",
                             "inference.coarse_to_fine=false", "data.external_masks=manifest", *extra])
    return stage1_cache(load_stage1(path, cfg), read_manifest(cohort), cfg)


def test_external_masks_beside_and_instead_of_the_segmenter(cohort: Path, tmp_path: Path) -> None:
    beside = _stage1(cohort, tmp_path)
    assert all(torch.equal(c.slices.external, c.slices.gt) for c in beside)  # the column named the ground truth
    assert all(c.source == "segmenter" for c in beside)
    # the same HU from the same mask; no spleen from a binary liver file
    assert all(c.slices.attenuation.get("external-mask") == c.slices.attenuation.get("oracle-mask") for c in beside)
    assert any("external-mask" in c.slices.attenuation for c in beside)
    assert not any("spleen" in c.slices.attenuation for c in beside)
    instead = _stage1(cohort, tmp_path, "classify.mask_source=external")
    for c in instead:
        assert torch.equal(c.slices.mask, c.slices.gt) and c.source == "manifest"
        assert c.seg_metrics["dice"] == pytest.approx(1.0)
    assert all(c.slices.attenuation.get("mask") == c.slices.attenuation.get("oracle-mask") for c in instead)


def test_external_source_without_masks_is_a_one_line_error(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="classify.mask_source: external needs data.external_masks"):
        _stage1(cohort, tmp_path, "classify.mask_source=external", "data.external_masks=null")

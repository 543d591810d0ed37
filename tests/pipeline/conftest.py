"""Fixtures for prediction tests that need no training: bundles of random networks and small NIfTI scans."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from livercad.config import load_config

SMALL = ["preprocess.image_size=32", "segment.model.encoder=resnet18", "segment.model.encoder_weights=none",
         "classify.backbone=resnet18", "classify.weights=none", "classify.image_size=32",
         "classify.classes=[normal, cirrhosis]", "inference.backend=torch", "inference.precision=fp32",
         "inference.qc_images=false", "inference.coarse_to_fine=false"]


def random_segmenter(path: Path, **meta: Any) -> Path:
    """A ``segmenter.pt`` with random weights (CT, 32 px); ``meta`` adds or replaces metadata keys."""
    from livercad.runtime.checkpoint import save_checkpoint
    from livercad.segment.infer import Segmenter

    seg = Segmenter.random(image_size=32, encoder="resnet18")
    return save_checkpoint(path, seg.model.state_dict(), {**seg.meta, **meta})


def random_classifier(path: Path, **meta: Any) -> Path:
    """A ``classifier.pt`` (normal / cirrhosis, region ``mask``, 32 px) with random weights."""
    import torch

    from livercad.classify.model import build_classifier
    from livercad.runtime.checkpoint import save_checkpoint

    torch.manual_seed(0)
    net = build_classifier("resnet18", num_classes=2, in_channels=3, strategy="scratch")
    base = {"kind": "livercad-classifier", "backbone": "resnet18", "classes": ["normal", "cirrhosis"],
            "region": "mask", "image_size": 32, "in_channels": 3}
    return save_checkpoint(path, net.state_dict(), {**base, **meta})


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """``make_bundle(name, classifier=True, seg_meta={}, clf_meta={}, overrides=[])`` -> a bundle folder."""
    from livercad.pipeline.bundle import write_bundle

    def make(name: str = "bundle", *, classifier: bool = True, seg_meta: dict[str, Any] | None = None,
             clf_meta: dict[str, Any] | None = None, overrides: list[str] | None = None) -> Path:
        work = tmp_path / f"{name}_work"
        work.mkdir()
        seg = random_segmenter(work / "segmenter.pt", **(seg_meta or {}))
        clf = random_classifier(work / "classifier.pt", **(clf_meta or {})) if classifier else None
        cfg = load_config(None, [*SMALL, *(overrides or [])])
        return write_bundle(tmp_path / name, segmenter=seg, classifier=clf, config=cfg)

    return make


def _ct_volume(path: Path, *, seed: int = 0, air: float = -1000.0) -> Path:
    """A small CT-like scan: air around a soft-tissue body (about 50 HU) with a brighter block in it."""
    rng = np.random.default_rng(seed)
    data = np.full((40, 36, 6), air, np.float32)
    data[6:34, 5:31] = 50 + rng.normal(0, 5, (28, 26, 6))
    data[10:24, 10:24] = 100.0
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 4.0, 1.0])), path)
    return path


def _mr_volume(path: Path, *, seed: int = 0) -> Path:
    """A small MR-like scan: non-negative magnitudes."""
    rng = np.random.default_rng(seed)
    data = np.abs(rng.normal(100, 30, (40, 36, 6))).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 4.0, 1.0])), path)
    return path


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    """A manifest from a header line and row lines."""
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def ct_volume() -> Callable[..., Path]:
    """``ct_volume(path, seed=0, air=-1000.0)`` writes a small CT-like NIfTI."""
    return _ct_volume


@pytest.fixture
def mr_volume() -> Callable[..., Path]:
    """``mr_volume(path, seed=0)`` writes a small MR-like NIfTI."""
    return _mr_volume


@pytest.fixture
def manifest_csv() -> Callable[..., Path]:
    """``manifest_csv(path, header, rows)`` writes a manifest."""
    return _write_csv

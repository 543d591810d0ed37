"""Model bundles: a trained pipeline as one directory.

Layout::

    BUNDLE/
      segmenter.pt     stage-1 checkpoint (tensors + JSON metadata, loaded with weights_only=True)
      classifier.pt    stage-2 checkpoint
      config.yaml      the resolved config both stages were trained with
      bundle.json      classes, preprocessing, versions, weights provenance, sha256 of every file

Loading verifies every checksum and that the two checkpoints agree with ``bundle.json``; any mismatch is
a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from livercad.config import Config, config_to_dict, load_config, save_config
from livercad.errors import CheckpointError, ConfigError
from livercad.io.atomic import atomic_write_text
from livercad.weights import sha256_file

log = logging.getLogger(__name__)

FILES = ("segmenter.pt", "classifier.pt", "config.yaml")
#: Where the default stage-1 model ships inside the package (``make model`` writes it).
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "liver"


def default_bundle_path() -> Path:
    """The stage-1 bundle shipped with the package (trained on the phantom only; see its ``MODEL_CARD.md``)."""
    return DEFAULT_BUNDLE


def versions() -> dict[str, str]:
    """Versions of the package and the libraries that shape its numbers."""
    import monai
    import numpy
    import segmentation_models_pytorch as smp
    import torch
    import torchvision

    import livercad

    return {
        "livercad": livercad.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "segmentation_models_pytorch": smp.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk, with its metadata."""

    path: Path
    config: Config
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        """Class names of the classifier, in output order."""
        return list(self.meta["classes"])

    @property
    def segmenter_path(self) -> Path:
        """Stage-1 checkpoint."""
        return self.path / "segmenter.pt"

    @property
    def classifier_path(self) -> Path:
        """Stage-2 checkpoint."""
        return self.path / "classifier.pt"


def write_bundle(out_dir: str | Path, *, segmenter: Path, classifier: Path, config: Config,
                 extra: dict[str, Any] | None = None) -> Path:
    """Assemble a bundle directory from two checkpoints and the config.

    Args:
        out_dir: bundle folder (created).
        segmenter: stage-1 checkpoint file.
        classifier: stage-2 checkpoint file.
        config: the config used for training.
        extra: more metadata for ``bundle.json`` (e.g. training metrics, weights provenance).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src, name in ((segmenter, "segmenter.pt"), (classifier, "classifier.pt")):
        if Path(src).resolve() != (out / name).resolve():
            tmp = out / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            tmp.replace(out / name)
    save_config(config, out / "config.yaml")
    meta: dict[str, Any] = {
        "format": "livercad-bundle/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": list(config.classify.classes),
        "preprocess": config_to_dict(config)["preprocess"],
        "segment_model": config_to_dict(config)["segment"]["model"],
        "classifier": {k: config_to_dict(config)["classify"][k]
                       for k in ("backbone", "weights", "strategy", "region", "image_size", "aggregation")},
        "versions": versions(),
        "sha256": {name: sha256_file(out / name) for name in FILES},
    }
    meta.update(extra or {})
    atomic_write_text(out / "bundle.json", json.dumps(meta, indent=2, default=str))
    log.info("wrote bundle %s", out)
    return out


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Open and verify a bundle directory.

    Raises:
        CheckpointError: missing files, checksum mismatch, or metadata that contradicts the config.
    """
    p = Path(path)
    meta_path = p / "bundle.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{p}: not a livercad model bundle (no bundle.json); "
                              "train one with 'livercad train pipeline' or 'livercad demo'")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable bundle metadata ({exc})") from None
    for name in FILES:
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: bundle file missing")
        if verify and sha256_file(f) != meta.get("sha256", {}).get(name):
            raise CheckpointError(f"{f}: sha256 does not match bundle.json (file changed or corrupt)")
    try:
        cfg = load_config(p / "config.yaml")
    except ConfigError as exc:
        raise CheckpointError(f"{p / 'config.yaml'}: {exc}") from None
    if list(cfg.classify.classes) != list(meta.get("classes", [])):
        raise CheckpointError(f"{p}: classes in config.yaml {cfg.classify.classes} differ from "
                              f"bundle.json {meta.get('classes')}")
    return Bundle(path=p, config=cfg, meta=meta)


def bundle_checksums(bundle: Bundle) -> dict[str, str]:
    """The recorded sha256 of each bundle file (for run.json)."""
    return dict(bundle.meta.get("sha256", {}))

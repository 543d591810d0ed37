"""Model bundles: a trained pipeline as one directory.

Layout::

    BUNDLE/
      segmenter.pt     stage-1 checkpoint (tensors + JSON metadata, loaded with weights_only=True)
      classifier.pt    stage-2 checkpoint (absent in a segmentation-only bundle)
      config.yaml      the resolved config both stages were trained with
      bundle.json      stages, classes, modalities, training domain of each stage, versions,
                       weights provenance, sha256 of every file

``bundle.json`` ``stages`` is ``["segment", "classify"]``, or ``["segment"]`` for a segmentation-only
bundle (no ``classifier.pt``, no classes; the default model that ships with the package is one).
``domain`` says what each stage was trained on: ``phantom`` (the embedded synthetic cohort), ``real`` or
``unknown`` (:func:`training_domain`).

The settings a stage's network needs at inference (preprocessing, post-processing, architecture,
region, aggregation) are recorded once, in its checkpoint's metadata
(:mod:`livercad.runtime.checkpoint_meta`); ``bundle.json`` does not copy them. The copies older bundles
hold (:data:`RETIRED_BUNDLE_KEYS`) are dropped on loading, and so are the retired keys of their
``config.yaml`` (:data:`livercad.config_keys.RETIRED_KEYS`).

Loading verifies every checksum and that the checkpoints agree with ``bundle.json``; any mismatch is
a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from livercad.config import Config, load_config, save_config
from livercad.domain import config_domain
from livercad.errors import CheckpointError, ConfigError
from livercad.io.atomic import atomic_write_text
from livercad.models import default_bundle_path
from livercad.runtime.provenance import versions
from livercad.runtime.weights import sha256_file

log = logging.getLogger(__name__)

#: Checkpoint file of each stage, in pipeline order.
STAGE_FILES = {"segment": "segmenter.pt", "classify": "classifier.pt"}
DOMAINS = ("phantom", "real", "unknown")
#: ``bundle.json`` keys of older bundles that copied settings their checkpoints and config already hold.
RETIRED_BUNDLE_KEYS = ("preprocess", "segment_model", "classifier")


def resolve_bundle_path(model: str | Path | None) -> Path:
    """The bundle folder to use: ``model``, or the default one when ``model`` is ``None``.

    Raises:
        CheckpointError: ``model`` is ``None`` and the default model is not installed.
    """
    if model is not None:
        return Path(model)
    path = default_bundle_path()
    if not (path / "bundle.json").is_file():
        raise CheckpointError(f"{path}: the default liver model is not installed; build it with 'make model' "
                              "or pass --model BUNDLE (a folder written by 'livercad train pipeline' or "
                              "'livercad demo')")
    return path


def training_domain(meta: Mapping[str, Any], config: Config | None = None) -> str:
    """What a stage was trained on: ``phantom`` | ``real`` | ``unknown``.

    In order: the checkpoint's ``training_domain``; the ``data.manifest`` of the config recorded in the
    checkpoint, else of ``config`` (the bundle's training config), via :func:`config_domain`; ``unknown``.

    Example:
        >>> training_domain({"training_domain": "real"}), training_domain({"config": {"data": {"manifest": None}}})
        ('real', 'phantom')
        >>> training_domain({})
        'unknown'
    """
    recorded = meta.get("training_domain")
    if recorded in DOMAINS:
        return str(recorded)
    inner = meta.get("config")
    data = inner.get("data") if isinstance(inner, Mapping) else None
    if not isinstance(data, Mapping) and config is not None:
        data = {"manifest": config.data.manifest}
    if not isinstance(data, Mapping) or "manifest" not in data:
        return "unknown"
    return config_domain(data["manifest"])


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk, with its metadata."""

    path: Path
    config: Config
    meta: dict[str, Any]

    @property
    def stages(self) -> list[str]:
        """``["segment", "classify"]``, or ``["segment"]`` for a segmentation-only bundle."""
        return list(self.meta.get("stages", list(STAGE_FILES)))

    @property
    def has_classifier(self) -> bool:
        """True when the bundle has a stage-2 classifier."""
        return "classify" in self.stages

    @property
    def classes(self) -> list[str]:
        """Class names of the classifier, in output order (empty without a classifier)."""
        return list(self.meta.get("classes") or []) if self.has_classifier else []

    @property
    def domain(self) -> dict[str, str | None]:
        """Training domain of each stage (``None`` for a stage the bundle lacks).

        Bundles written before ``domain`` was recorded get it from their ``config.yaml``.
        """
        recorded = self.meta.get("domain")
        if not isinstance(recorded, Mapping):
            recorded = dict.fromkeys(self.stages, training_domain({}, self.config))
        return {s: ((recorded.get(s) or "unknown") if s in self.stages else None) for s in STAGE_FILES}

    @property
    def modalities(self) -> list[str]:
        """Modality families the segmenter was trained on (from ``bundle.json``, else the config)."""
        from livercad.modality import family

        return list(self.meta.get("modalities") or [family(self.config.preprocess.modality)])

    @property
    def segmenter_path(self) -> Path:
        """Stage-1 checkpoint."""
        return self.path / STAGE_FILES["segment"]

    @property
    def classifier_path(self) -> Path | None:
        """Stage-2 checkpoint, ``None`` in a segmentation-only bundle."""
        return self.path / STAGE_FILES["classify"] if self.has_classifier else None


def _stage_meta(checkpoints: Mapping[str, Path], config: Config) -> dict[str, Any]:
    """``domain`` of each stage and the segmenter's ``modalities``, read from the checkpoints' metadata."""
    from livercad.modality import family
    from livercad.runtime.checkpoint import load_checkpoint
    from livercad.runtime.checkpoint_meta import SegmenterMeta, read_meta

    domain: dict[str, str | None] = {s: None for s in STAGE_FILES}
    modalities: list[str] = [family(config.preprocess.modality)]
    for stage, path in checkpoints.items():
        meta = load_checkpoint(path)[1]
        domain[stage] = training_domain(meta, config)
        if stage == "segment":
            pp = read_meta(SegmenterMeta, meta, path).preprocessing
            modalities = list(dict.fromkeys(family(m) for m in pp.modalities))
    return {"domain": domain, "modalities": modalities}


def _copy_stages(out: Path, checkpoints: Mapping[str, Path]) -> None:
    """Copy each stage's checkpoint into the bundle (atomically); remove the file of a stage it lacks."""
    for stage, name in STAGE_FILES.items():
        if stage not in checkpoints:
            (out / name).unlink(missing_ok=True)  # a stale classifier.pt must not look like part of the bundle
        elif Path(checkpoints[stage]).resolve() != (out / name).resolve():
            tmp = out / f".{name}.tmp"
            shutil.copyfile(checkpoints[stage], tmp)
            tmp.replace(out / name)


def write_bundle(out_dir: str | Path, *, segmenter: Path, classifier: Path | None = None, config: Config,
                 extra: dict[str, Any] | None = None) -> Path:
    """Assemble a bundle directory from the checkpoints and the config.

    Args:
        out_dir: bundle folder (created).
        segmenter: stage-1 checkpoint file.
        classifier: stage-2 checkpoint file; ``None`` writes a segmentation-only bundle.
        config: the config used for training.
        extra: more metadata for ``bundle.json`` (e.g. training metrics, weights provenance).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = {"segment": Path(segmenter), **({"classify": Path(classifier)} if classifier is not None else {})}
    _copy_stages(out, checkpoints)
    save_config(config, out / "config.yaml")
    meta: dict[str, Any] = {
        "format": "livercad-bundle/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": list(checkpoints),
        "classes": list(config.classify.classes) if classifier is not None else [],
        **_stage_meta({s: out / STAGE_FILES[s] for s in checkpoints}, config),
        "versions": versions(),
        "sha256": {name: sha256_file(out / name) for name in _files(list(checkpoints))},
    }
    meta.update(extra or {})
    atomic_write_text(out / "bundle.json", json.dumps(meta, indent=2, default=str))
    log.info("wrote bundle %s (stages %s, trained on %s)", out, meta["stages"], meta["domain"])
    return out


def _files(stages: list[str]) -> list[str]:
    """The files a bundle of these stages holds (and checksums)."""
    return [*(STAGE_FILES[s] for s in stages), "config.yaml"]


def _read_meta(p: Path) -> dict[str, Any]:
    """``bundle.json`` of the folder ``p``, with its ``stages`` checked and the :data:`RETIRED_BUNDLE_KEYS` dropped."""
    meta_path = p / "bundle.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{p}: not a livercad model bundle (no bundle.json); "
                              "train one with 'livercad train pipeline' or 'livercad demo'")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable bundle metadata ({exc})") from None
    stages = meta.get("stages", list(STAGE_FILES)) if isinstance(meta, dict) else None
    if not isinstance(stages, list) or "segment" not in stages or not set(stages) <= set(STAGE_FILES):
        raise CheckpointError(f"{meta_path}: 'stages' must be ['segment'] or ['segment', 'classify'], got {stages!r}")
    return {k: v for k, v in meta.items() if k not in RETIRED_BUNDLE_KEYS}


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Open and verify a bundle directory (both stages, or segmentation only).

    Raises:
        CheckpointError: missing files, checksum mismatch, or metadata that contradicts the config.
    """
    p = Path(path)
    meta = _read_meta(p)
    stages = meta.get("stages", list(STAGE_FILES))
    for name in _files(stages):
        f = p / name
        if not f.is_file():
            raise CheckpointError(f"{f}: bundle file missing")
        if verify and sha256_file(f) != meta.get("sha256", {}).get(name):
            raise CheckpointError(f"{f}: sha256 does not match bundle.json (file changed or corrupt)")
    try:
        cfg = load_config(p / "config.yaml", drop_retired_keys=True)
    except ConfigError as exc:
        raise CheckpointError(f"{p / 'config.yaml'}: {exc}") from None
    if "classify" in stages and list(cfg.classify.classes) != list(meta.get("classes", [])):
        raise CheckpointError(f"{p}: classes in config.yaml {cfg.classify.classes} differ from "
                              f"bundle.json {meta.get('classes')}")
    return Bundle(path=p, config=cfg, meta=meta)


def bundle_checksums(bundle: Bundle) -> dict[str, str]:
    """The recorded sha256 of each bundle file (for run.json)."""
    return dict(bundle.meta.get("sha256", {}))

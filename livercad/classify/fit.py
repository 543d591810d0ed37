"""Stage-2 training on Lightning: liver-bearing slices of the train cases, case-level validation.

* Data: every selected slice (:func:`~livercad.classify.data.select_slices`) of every labelled train
  case, label from the case; region inputs are computed once per case. Cases of ``n`` co-registered images
  (multi-phase) give ``n`` times the 2.5-D channels; their names are recorded as ``images``. Cases whose label
  is not one of ``cfg.classes`` are skipped and counted (``meta["skipped"]``).
* Sampling: each case is equally likely whatever its number of slices; with ``cfg.class_weighting``
  each *class* is too. That is the class weighting (equal in expectation to inverse-frequency weights
  in the cross entropy, which is therefore left unweighted: no double correction).
* Augmentation (``cfg.augment: affine``, image networks only): small random affine (±10°, scale 0.9–1.1,
  shift ±6 %) and slight intensity jitter (±5 % contrast, ±0.02; not on a mask channel); no left-right
  flips. The affine resampling is bilinear, a low-pass filter the test inputs never get: ``augment: none``
  keeps the training inputs pixel-exact (fine parenchymal texture, budgets of a few epochs).
* Validation: case-level probabilities with the configured aggregation, scored by
  :func:`~livercad.classify.infer.case_scores` (AUC − 0.001 × log loss); the best epoch's weights are
  kept, early stopping on it. ``cfg.train.max_minutes`` covers the whole call (inputs, features, fit):
  stage 1's ``TimeBudget`` stops early enough for the closing validation and drives the learning rate
  (AdamW, warm-up then cosine by step or elapsed-time share, ``lr_factor``).
* ``frozen`` strategy: the backbone never changes, so its features are computed **once per slice**
  (no augmentation) and only the linear head is trained on the cached, standardised features (the
  standardisation is folded into the head afterwards): orders of magnitude faster than running the
  backbone every step. Pass one ``feature_cache`` dict to several calls (seeds, arms) to share them.
* Resume: with an ``out_dir`` the run writes ``lightning/checkpoints/last.ckpt`` (atomic, loaded
  weights-only, see :mod:`livercad.runtime.resume`); ``resume=True`` continues from it (the same settings,
  seed and input cases are required) with what was left of the time budget.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from livercad.classify.data import (
    CONTEXT,
    case_images,
    resolve_labels,
    sample_weights,
    slice_labels,
    stack_inputs,
)
from livercad.classify.infer import (
    Classifier,
    backbone_features,
    check_aggregation,
    net_fingerprint,
)
from livercad.classify.model import ClassifierNet, build_classifier, param_groups
from livercad.classify.module import ClassifierModule, KeepBest, make_loader, make_trainer
from livercad.classify.regions import region_channels
from livercad.classify.threshold import choose_decision, fold_threshold
from livercad.config import ClassifyConfig
from livercad.errors import ConfigError, InputError
from livercad.runtime.budget import TimeBudget
from livercad.runtime.checkpoint_meta import ClassifierMeta
from livercad.runtime.provenance import versions
from livercad.runtime.resume import (
    LAST_EVERY_S,
    LastCheckpoint,
    SafeCheckpointIO,
    checkpoint_dir,
    fingerprint,
    fingerprint_hash,
    plan_resume,
)
from livercad.types import CaseSlices

logger = logging.getLogger(__name__)


@dataclass
class TrainedClassifier:
    """The result of :func:`train_classifier`: a ready :class:`Classifier`, its metadata and checkpoint."""

    classifier: Classifier
    meta: dict[str, Any]
    path: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model(self) -> ClassifierNet:
        """The trained network."""
        return self.classifier.model


def _features(net: ClassifierNet, cases: list[CaseSlices], xs: list[torch.Tensor], cfg: ClassifyConfig,
              cache: dict[Any, torch.Tensor] | None) -> list[torch.Tensor]:
    """Backbone features per case (eval mode, no augmentation), shared through ``cache``."""
    fp = net_fingerprint(net) if cache is not None else ""
    out = []
    for c, x in zip(cases, xs, strict=True):
        key = (fp, c.case_id, cfg.region, cfg.image_size, cfg.crop_margin, cfg.min_liver_fraction, x.shape[0])
        f = cache.get(key) if cache is not None else None
        if f is None:
            f = backbone_features(net, x)
            if cache is not None:
                cache[key] = f
        out.append(f)
    return out


def _fold_standardisation(head: nn.Linear, mu: torch.Tensor, sd: torch.Tensor) -> None:
    with torch.no_grad():
        w = head.weight / sd
        head.bias.sub_(w @ mu)
        head.weight.copy_(w)


def _check_cases(train: list[CaseSlices], cfg: ClassifyConfig) -> None:
    present = sorted({int(c.label) for c in train if c.label is not None})
    if len(present) < 2:
        raise InputError(None, f"classification training needs labelled train cases of at least two of the "
                               f"classes {cfg.classes}; got {len(train)} case(s) of class index(es) {present}")


class _Resume(NamedTuple):
    folder: Path  # lightning/checkpoints
    start: Path | None  # last.ckpt to continue from
    fp: dict[str, Any]
    every_s: float


def _digest(cases: list[CaseSlices]) -> str:
    """sha256 of the cases' ids, labels and tensors (a resumed run must see the same inputs)."""
    h = hashlib.sha256()
    for c in cases:
        h.update(f"{c.case_id}|{c.label}|".encode())
        for x in (c.image, c.prob, c.mask, c.gt):
            if x is not None:
                h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass
class _Data:
    x: torch.Tensor  # train inputs (images, or standardised backbone features when frozen)
    y: torch.Tensor
    case: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    vcase: torch.Tensor
    varea: torch.Tensor
    standardise: tuple[torch.Tensor, torch.Tensor] | None = None
    images: tuple[str, ...] = ("image",)  # the co-registered images of every case (classify.data.case_images)


def _data(net: ClassifierNet, train: list[CaseSlices], val: list[CaseSlices], cfg: ClassifyConfig,
          cache: dict[Any, torch.Tensor] | None) -> _Data:
    xs, _ = stack_inputs(train, cfg)
    vxs, vareas = stack_inputs(val, cfg)
    y, case = slice_labels(train, xs)
    vy, vcase = slice_labels(val, vxs)
    varea = torch.cat(vareas) if vareas else torch.zeros(0)
    images = case_images([*train, *val])
    if net.strategy != "frozen":
        return _Data(torch.cat(xs), y, case, torch.cat(vxs) if vxs else torch.zeros(0), vy, vcase, varea,
                     images=images)
    x = torch.cat(_features(net, train, xs, cfg, cache))
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    vx = (torch.cat(_features(net, val, vxs, cfg, cache)) - mu) / sd if val else torch.zeros(0)
    return _Data((x - mu) / sd, y, case, vx, vy, vcase, varea, (mu, sd), images)


def _fit(net: ClassifierNet, d: _Data, val_y: np.ndarray, cfg: ClassifyConfig, minutes: float, seed: int,
         progress: bool, res: _Resume | None) -> tuple[ClassifierModule, KeepBest]:
    frozen = d.standardise is not None
    trainee: nn.Module = net.head if frozen else net
    groups = ([{"params": list(net.head.parameters()), "lr": cfg.train.lr, "name": "head"}] if frozen
              else param_groups(net, cfg.train.lr, cfg.backbone_lr_factor))
    t = cfg.train
    steps = t.steps_per_epoch or math.ceil(len(d.y) / t.batch_size)
    budget = TimeBudget(max(minutes, 0.05) * 60, math.ceil(len(d.vy) / max(t.batch_size, 64)), t.max_epochs * steps)
    aug = None if frozen or cfg.augment == "none" else (2 * CONTEXT + 1) * len(d.images)
    lit = ClassifierModule(trainee, groups, cfg, aug, d.vcase, d.varea, val_y, budget)
    keep = KeepBest()
    callbacks: list[pl.Callback] = [keep, budget]
    if len(val_y):
        callbacks.append(pl.callbacks.EarlyStopping("val_score", mode="max", patience=cfg.train.patience,
                                                    check_on_train_epoch_end=False))
    if res is not None:
        callbacks.append(LastCheckpoint(res.folder / "last.ckpt", res.every_s))
    io = SafeCheckpointIO(res.fp) if res is not None else None
    trainer = make_trainer(cfg, minutes, callbacks, bool(len(val_y)), progress, io)
    weights = sample_weights(d.case.numpy(), d.y.numpy(), cfg.class_weighting)
    trainee.train()
    val_loader = make_loader(d.vx, d.vy, None, cfg) if len(val_y) else None
    trainer.fit(lit, make_loader(d.x, d.y, weights, cfg, seed), val_loader,
                ckpt_path=res.start if res is not None else None, weights_only=True)
    if keep.state is not None:
        trainee.load_state_dict(keep.state)
    if d.standardise is not None:
        _fold_standardisation(net.head, *d.standardise)
    return lit, keep


def _resume_plan(train: list[CaseSlices], val: list[CaseSlices], cfg: ClassifyConfig, out_dir: Path | None,
                 seed: int, resume: bool, every_s: float) -> tuple[_Resume | None, TrainedClassifier | None]:
    """Where to checkpoint and resume from; or the finished export of this very run (then not retrained)."""
    if out_dir is None:
        if resume:
            raise ConfigError("resume=True needs an out_dir to keep the training checkpoints in; got None")
        return None, None
    c = cfg.model_dump(mode="json")
    knobs = c.pop("train")
    fp = fingerprint(classify=c, train=knobs, seed=seed, train_cases=_digest(train), val_cases=_digest(val))
    path = Path(out_dir) / "classifier.pt"
    done, start = plan_resume(path, fp, resume)
    if done:
        clf = Classifier.load(path, precision="fp32", device="cpu")
        return None, TrainedClassifier(clf, clf.meta, path, list(clf.meta.get("history") or []))
    return _Resume(checkpoint_dir(out_dir), start, fp, every_s), None


def train_classifier(train: list[CaseSlices], val: list[CaseSlices], cfg: ClassifyConfig, out_dir: Path | None,
                     *, seed: int | None = None, progress: bool = True,
                     feature_cache: dict[Any, torch.Tensor] | None = None, resume: bool = False,
                     checkpoint_every_s: float = LAST_EVERY_S) -> TrainedClassifier:
    """Train the stage-2 classifier on the liver-bearing slices of ``train``, selecting on ``val`` cases.

    Args:
        train: training cases (stage-1 caches); labels are mapped onto ``cfg.classes``, others skipped.
        val: validation cases (case-level model selection and early stopping); may be empty.
        cfg: the ``classify`` config section (backbone, weights, strategy, region, classes, budget...).
        out_dir: where ``classifier.pt`` and ``lightning/checkpoints/last.ckpt`` are written (``None``:
            nothing written, no resume).
        seed: overrides ``cfg.train.seed`` (model init, sampling, augmentation).
        progress: show Lightning's progress bar.
        feature_cache: optional dict shared between calls: cached backbone features (``frozen`` only).
        resume: continue from ``out_dir/lightning/checkpoints/last.ckpt``; a run that already exported
            ``classifier.pt`` (same settings and inputs) is loaded instead of trained again.
        checkpoint_every_s: least interval between two writes of ``last.ckpt`` (at a step or validation end).

    Returns:
        The trained classifier, its metadata (also saved in the checkpoint) and the per-epoch history.

    Raises:
        InputError: fewer than two classes among the labelled train cases.
        ConfigError / CheckpointError: from the model factory (names, weights, strategy); ``resume``
            without ``out_dir``; an unsafe, corrupt or foreign checkpoint to resume from.
    """
    t0 = time.perf_counter()
    seed = cfg.train.seed if seed is None else seed
    check_aggregation(cfg.aggregation)
    train_l, skip_train = resolve_labels(train, list(cfg.classes))
    val_l, skip_val = resolve_labels(val, list(cfg.classes))
    if skip_train or skip_val:
        logger.warning("skipped cases whose label is not in %s: train %s, val %s", cfg.classes, skip_train, skip_val)
    _check_cases(train_l, cfg)
    res, done = _resume_plan(train_l, val_l, cfg, out_dir, seed, resume, checkpoint_every_s)
    if done is not None:
        return done
    pl.seed_everything(seed, verbose=False)
    in_ch = region_channels(cfg.region, (2 * CONTEXT + 1) * len(case_images([*train_l, *val_l])))
    net = build_classifier(cfg.backbone, weights=cfg.weights, num_classes=len(cfg.classes), in_channels=in_ch,
                           strategy=cfg.strategy, image_size=cfg.image_size)
    d = _data(net, train_l, val_l, cfg, feature_cache)
    minutes = cfg.train.max_minutes - (time.perf_counter() - t0) / 60 - 0.05  # 3 s kept for the export
    val_y = np.array([int(c.label) for c in val_l], dtype=np.int64)
    lit, keep = _fit(net, d, val_y, cfg, minutes, seed, progress, res)
    net = net.cpu().eval()
    decision = choose_decision(cfg.decision, val_y, keep.val_proba if keep.state is not None else None,
                               len(cfg.classes))
    if decision["method"] == "youden":
        decision["logit_shift"] = fold_threshold(net.head, decision["threshold"])
    record = {"n_train_cases": len(train_l), "n_val_cases": len(val_l), "skipped": {"train": skip_train,
              "val": skip_val}, "train_seconds": round(time.perf_counter() - t0, 2)}
    meta = _classifier_meta(cfg, net, seed, lit, keep, d, decision, res, record)
    path = None
    if out_dir is not None:
        from livercad.runtime.checkpoint import save_checkpoint

        path = save_checkpoint(Path(out_dir) / "classifier.pt", net.state_dict(), meta.to_dict())
    return TrainedClassifier(Classifier(net, meta, precision="fp32", device="cpu"), meta.to_dict(), path, lit.history)


def _classifier_meta(cfg: ClassifyConfig, net: ClassifierNet, seed: int, lit: ClassifierModule, keep: KeepBest,
                     d: _Data, decision: dict[str, Any], res: _Resume | None, record: dict[str, Any]) -> ClassifierMeta:
    """The metadata of ``classifier.pt`` (:meth:`ClassifierMeta.build`): settings, decision, training record."""
    return ClassifierMeta.build(
        cfg, backbone=net.name, family=net.family, weights=net.weights, in_channels=region_channels(cfg.region,
        (2 * CONTEXT + 1) * len(d.images)), context=CONTEXT, seed=seed, images=list(d.images), decision=decision,
        history=lit.history, best_epoch=keep.epoch,
        best_val_score=keep.best if keep.state is not None else None, n_train_slices=int(len(d.y)),
        feature_cache=d.standardise is not None, versions=versions(), resumed_from_step=lit.resumed_step,
        steps_run=lit.budget.run_steps, steps=int(lit.global_step),
        resume_key=fingerprint_hash(res.fp) if res is not None else None, **record)


__all__ = ["TrainedClassifier", "train_classifier"]

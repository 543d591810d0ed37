"""Stage-1 training on PyTorch Lightning: Dice+CE loss, balanced slices, per-volume validation Dice.

:func:`train_segmenter` loads every case once and trains :class:`~livercad.segment.module.SegmentationModule`:
MONAI ``DiceCELoss`` with a sigmoid, AdamW, warm-up + cosine learning rate over the planned steps (a run that
falls behind the pace needed to finish within the time budget anneals by elapsed time instead, so it still
ends at a low learning rate, and records ``lr_schedule: time`` since it is then not bit-reproducible). It
validates with the 3-D Dice of every validation volume (model space, threshold 0.5; at most
``segment.max_val_cases`` volumes, evenly spaced over the val split, default 24: the budget reserves time for
the closing validation, and 120 validation volumes once left a 150-s budget a single training step), keeps the
best weights and exports them as ``segmenter.pt`` with :func:`livercad.runtime.checkpoint.save_checkpoint`
(config, preprocessing, weights provenance, history, versions). Lightning writes its ``.ckpt`` files
(atomically, see :mod:`livercad.runtime.resume`) and CSV logs under ``lightning/``; ``resume=True`` continues
from ``lightning/checkpoints/last.ckpt``. On resume the time budget is the *remaining* one: ``max_minutes``
minus the training time recorded in the checkpoint (work done after that checkpoint is redone). The time
budget is the one non-reproducible knob.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from livercad.config import Config
from livercad.errors import InputError
from livercad.runtime.budget import TimeBudget
from livercad.runtime.checkpoint import save_checkpoint
from livercad.runtime.checkpoint_meta import SegmenterMeta
from livercad.runtime.provenance import versions
from livercad.runtime.resume import LAST_EVERY_S, fingerprint, fingerprint_hash, plan_resume
from livercad.segment.data import SliceDataset, anatomy_augment, balanced_sampler, load_cases
from livercad.segment.module import SegmentationModule, make_trainer, stop_reason

logger = logging.getLogger(__name__)

_EXPORT_RESERVE_S = 3.0  # kept free for writing the checkpoint at the end of the budget


def _split(rows: Sequence[Any], name: str, cap: int | None = None) -> list[Any]:
    """The rows of split ``name``; with ``cap``, at most ``cap`` of them, evenly spaced (deterministic)."""
    part = [r for r in rows if str(r.split).lower() == name]
    if cap is None or len(part) <= cap:
        return part
    keep = np.linspace(0, len(part) - 1, cap).round().astype(int)
    return [part[int(i)] for i in keep]


def _loaders(cfg: Config, rows: Sequence[Any]) -> tuple[DataLoader, DataLoader, int]:
    train_rows, val_rows = _split(rows, "train"), _split(rows, "val", cfg.segment.max_val_cases)
    if len(val_rows) == cfg.segment.max_val_cases:
        logger.info("stage 1 validates on at most %d val volumes (segment.max_val_cases)", len(val_rows))
    for name, part in (("train", train_rows), ("val", val_rows)):
        if not part:
            raise InputError(None, f"no '{name}' cases among {len(rows)} manifest rows; set split to train/val/test")
    t, ctx = cfg.segment.train, cfg.segment.model.context
    augment = anatomy_augment(t.seed, crop_size=cfg.segment.crop_size, intensity=cfg.segment.intensity_augment)
    train_ds = SliceDataset(load_cases(train_rows, cfg), context=ctx, augment=augment)
    val_ds = SliceDataset(load_cases(val_rows, cfg), context=ctx)
    steps = t.steps_per_epoch or max(len(train_ds) // t.batch_size, 1)
    gen = torch.Generator().manual_seed(t.seed)
    sampler = balanced_sampler(train_ds.liver_flags(), cfg.segment.liver_slice_fraction, steps * t.batch_size, gen)
    common: dict[str, Any] = {"num_workers": t.num_workers, "persistent_workers": t.num_workers > 0}
    if t.num_workers:
        from monai.data.utils import worker_init_fn

        common["worker_init_fn"] = worker_init_fn
    train_dl = DataLoader(train_ds, batch_size=t.batch_size, sampler=sampler, drop_last=True, **common)
    val_dl = DataLoader(val_ds, batch_size=t.batch_size * 2, shuffle=False, **common)
    return train_dl, val_dl, steps


def run_fingerprint(cfg: Config, rows: Sequence[Any]) -> dict[str, Any]:
    """What a resumed stage-1 run must share with the run that wrote the checkpoint."""
    seg = cfg.segment.model_dump(mode="json")
    return fingerprint(preprocess=cfg.preprocess.model_dump(mode="json"), model=seg["model"], train=seg["train"],
                       postprocess=seg["postprocess"], liver_slice_fraction=seg["liver_slice_fraction"],
                       **{k: seg[k] for k in ("intensity_augment", "ema") if seg[k]},
                       liver_labels=cfg.data.liver_labels,
                       cases={s: [str(r.case_id) for r in _split(rows, s, cap)]
                              for s, cap in (("train", None), ("val", cfg.segment.max_val_cases))})


def _history(trainer: L.Trainer, module: SegmentationModule, budget: TimeBudget, seconds: float,
             n_train: int) -> dict[str, Any]:
    best = module.best
    return {"epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
            "best_val_dice": best["dice"] if best["state"] is not None else float("nan"),
            "best_epoch": best["epoch"], "best_step": best["step"], "stopped_by": stop_reason(trainer, budget),
            "lr_schedule": "time" if budget.time_bound else "steps", "budget_seconds": round(budget.budget_s, 2),
            "seconds": round(seconds, 2), "fit_seconds": round(budget.fit_s, 2), "val_seconds": round(budget.val_s, 2),
            "per_epoch": module.history, "n_train_cases": n_train, "n_val_cases": module.n_val_cases,
            "resumed_from_step": module.resumed_step, "steps_run": budget.run_steps}


def trained_modalities(rows: Sequence[Any], cfg: Config) -> list[str]:
    """Modality families of the training rows (each row's ``modality`` column, else the config's)."""
    from livercad.modality import family
    from livercad.segment.data import row_modality

    return sorted({family(row_modality(r, cfg.preprocess.modality)) for r in rows})


def segmenter_meta(cfg: Config, module: SegmentationModule, history: dict[str, Any],
                   modalities: list[str] | None = None, resume_key: str | None = None) -> SegmenterMeta:
    """The metadata stored next to the weights in ``segmenter.pt`` (:meth:`SegmenterMeta.build`).

    ``modalities``: the families trained on (default: the config's one).
    """
    from livercad.modality import family

    return SegmenterMeta.build(cfg, modalities=modalities or [family(cfg.preprocess.modality)],
                               weights=module.weights_info.to_dict(), init=module.init, history=history,
                               versions=versions(), resume_key=resume_key)


def train_segmenter(rows: Sequence[Any], cfg: Config, out_dir: Path, *, progress: bool = True,
                    max_steps: int = -1, resume: bool = False, checkpoint_every_s: float = LAST_EVERY_S) -> Path:
    """Train the liver segmenter on the ``train`` rows (validating on ``val``) and export ``segmenter.pt``.

    The whole call (loading included) stays within ``cfg.segment.train.max_minutes``; a resumed call
    gets what the interrupted run had left of it.

    Args:
        rows: manifest rows (``case_id``, ``image``, ``mask``, ``split``).
        cfg: the run config (``preprocess``, ``segment``, ``data.liver_labels``).
        out_dir: output folder; receives ``segmenter.pt`` and ``lightning/`` (checkpoints, CSV logs).
        progress: show Lightning's progress bar and model summary.
        max_steps: optional hard cap on optimiser steps (tests, smoke runs); ``-1`` = no cap.
        resume: continue from ``out_dir/lightning/checkpoints/last.ckpt`` (the same run's settings and
            cases are required); a run that already exported ``segmenter.pt`` is not trained again.
        checkpoint_every_s: least interval between two writes of ``last.ckpt`` (at a step or validation end).

    Returns:
        Path of the exported checkpoint.

    Raises:
        InputError: no train or val cases, a row without mask, unreadable files.
        ConfigError / CheckpointError: bad model name or unavailable weights; an unsafe, corrupt or
            foreign checkpoint to resume from.
    """
    start = time.monotonic()
    out_dir, path = Path(out_dir), Path(out_dir) / "segmenter.pt"
    t = cfg.segment.train
    fp = run_fingerprint(cfg, rows)
    done, ckpt = plan_resume(path, fp, resume)
    if done:
        return path
    L.seed_everything(t.seed, workers=True, verbose=False)
    train_dl, val_dl, steps = _loaders(cfg, rows)
    budget_s = max(t.max_minutes * 60.0 - (time.monotonic() - start) - _EXPORT_RESERVE_S, 1.0)
    total = steps * t.max_epochs if max_steps < 0 else min(max_steps, steps * t.max_epochs)
    budget = TimeBudget(budget_s, len(val_dl), total)
    module = SegmentationModule(cfg, n_val_cases=len(val_dl.dataset.cases), budget=budget)
    trainer = make_trainer(cfg, out_dir, budget, steps, progress, max_steps, fp, checkpoint_every_s)
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=ckpt, weights_only=True)
    history = _history(trainer, module, budget, time.monotonic() - start, len(train_dl.dataset.cases))
    state = module.best["state"] if module.best["state"] is not None else module.evaluated.state_dict()
    if trainer.is_global_zero:
        meta = segmenter_meta(cfg, module, history, trained_modalities(rows, cfg), fingerprint_hash(fp))
        save_checkpoint(path, state, meta.to_dict())
    logger.info("segmenter: best val Dice %.4f after %d steps (%s) -> %s", history["best_val_dice"],
                history["steps"], history["stopped_by"], path)
    return path


__all__ = ["run_fingerprint", "segmenter_meta", "train_segmenter", "trained_modalities"]

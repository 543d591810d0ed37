"""Stage-1 training on PyTorch Lightning: Dice+CE loss, balanced slices, per-volume validation Dice.

:func:`train_segmenter` loads every case once and trains :class:`SegmentationModule`: MONAI
``DiceCELoss`` with a sigmoid, AdamW, warm-up + cosine learning rate over the planned steps (a run that
falls behind the pace needed to finish within the time budget anneals by elapsed time instead, so it
still ends at a low learning rate, and records ``lr_schedule: time`` since it is then not
bit-reproducible). It validates with the 3-D Dice of every validation volume (model space, threshold
0.5; at most ``segment.max_val_cases`` volumes, evenly spaced over the val split, default 24: the budget
reserves time for the closing validation, and 120 validation volumes once left a 150-s budget a single
training step), keeps the best weights and exports them as ``segmenter.pt`` with
:func:`livercad.runtime.checkpoint.save_checkpoint` (config, preprocessing, weights provenance, history,
versions). Lightning writes its ``.ckpt`` files (atomically, see :mod:`livercad.runtime.resume`) and CSV logs
under ``lightning/``; ``resume=True`` continues from ``lightning/checkpoints/last.ckpt``. On resume the
time budget is the *remaining* one: ``max_minutes`` minus the training time recorded in the checkpoint
(work done after that checkpoint is redone). The time budget is the one non-reproducible knob.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from monai.losses import DiceCELoss
from torch.utils.data import DataLoader

from livercad.config import Config, config_to_dict
from livercad.errors import InputError
from livercad.runtime.budget import TimeBudget, lr_factor
from livercad.runtime.checkpoint import save_checkpoint
from livercad.runtime.resume import (
    LAST_EVERY_S,
    LastCheckpoint,
    SafeCheckpointIO,
    fingerprint,
    fingerprint_hash,
    finished,
    resume_point,
)
from livercad.segment.data import SliceDataset, anatomy_augment, balanced_sampler, load_cases
from livercad.segment.model import build_segmenter_with_info, in_channels_of, load_init_weights

logger = logging.getLogger(__name__)

_EXPORT_RESERVE_S = 3.0  # kept free for writing the checkpoint at the end of the budget
class SegmentationModule(L.LightningModule):
    """LightningModule around the smp network.

    Args:
        cfg: the run config (``segment`` section used).
        n_val_cases: number of validation volumes (per-volume Dice accumulators).
        budget: the run's :class:`TimeBudget` (LR schedule position, timing of the history).
    """

    def __init__(self, cfg: Config, *, n_val_cases: int, budget: TimeBudget) -> None:
        super().__init__()
        self.cfg, self.budget, self.n_val_cases = cfg, budget, n_val_cases
        self.model, self.weights_info = build_segmenter_with_info(cfg.segment.model)
        self.init = load_init_weights(self.model, cfg.segment.init) if cfg.segment.init else None
        self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = DiceCELoss(sigmoid=True, batch=True)
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] = {"dice": -1.0, "epoch": None, "step": None, "state": None}
        self._sums = torch.zeros(3, n_val_cases)
        self._loss = [0.0, 0]
        self.resumed_step: int | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["livercad_state"] = {"best": self.best, "history": self.history}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("livercad_state", {})
        self.best, self.history = state.get("best", self.best), list(state.get("history", []))
        self.resumed_step = int(checkpoint.get("global_step", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Liver logits ``(N, 1, S, S)``."""
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        self._loss = [self._loss[0] + float(loss.detach()), self._loss[1] + 1]
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3, self.n_val_cases, device=self.device)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y, case = batch
        pred = (self(x) > 0).float()  # logit > 0  <=>  probability > 0.5
        per_slice = torch.stack([(pred * y).flatten(1).sum(1), pred.flatten(1).sum(1), y.flatten(1).sum(1)])
        self._sums.index_add_(1, case.to(self.device).long(), per_slice)

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._sums, reduce_op="sum") if self.trainer.world_size > 1 else self._sums
        inter, p, r = sums
        per_case = torch.where(p + r > 0, 2 * inter / (p + r).clamp_min(1e-9), torch.ones_like(p))
        dice = float(per_case.mean()) if per_case.numel() else float("nan")
        self.log("val_dice", dice, prog_bar=True)
        loss = self._loss[0] / self._loss[1] if self._loss[1] else float("nan")
        self._loss = [0.0, 0]
        self.history.append({"epoch": int(self.current_epoch), "step": int(self.global_step), "val_dice": dice,
                             "train_loss": loss, "seconds": round(self.budget.elapsed(), 2)})
        if dice > self.best["dice"]:
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self.best = {"dice": dice, "epoch": int(self.current_epoch), "step": int(self.global_step), "state": state}

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.segment.train
        opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(self.budget.progress(step)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
    augment = anatomy_augment(t.seed, crop_size=cfg.segment.crop_size)
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
                       liver_labels=cfg.data.liver_labels,
                       cases={s: [str(r.case_id) for r in _split(rows, s, cap)]
                              for s, cap in (("train", None), ("val", cfg.segment.max_val_cases))})


def _trainer(cfg: Config, out_dir: Path, budget: TimeBudget, steps: int, progress: bool, max_steps: int,
             fp: dict[str, Any], every_s: float) -> L.Trainer:
    t, ckpt_dir = cfg.segment.train, out_dir / "lightning" / "checkpoints"
    callbacks = [
        budget,
        # both decide at validation end, so last.ckpt (written then too) holds their updated state
        ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch}", monitor="val_dice", mode="max", save_top_k=1,
                        save_on_train_epoch_end=False),
        EarlyStopping(monitor="val_dice", mode="max", patience=t.patience, check_on_train_epoch_end=False),
        LastCheckpoint(ckpt_dir / "last.ckpt", every_s),
    ]
    from livercad.runtime.progress import training_progress  # livercad's bar, or Lightning's own (--verbose)

    callbacks, lightning_own = training_progress(callbacks, enabled=progress, description="stage 1")
    return L.Trainer(
        max_epochs=t.max_epochs, max_steps=max_steps, max_time=timedelta(seconds=budget.budget_s),
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, callbacks=callbacks, logger=CSVLogger(out_dir / "lightning", name="logs"),
        plugins=[SafeCheckpointIO(fp)],
        enable_progress_bar=lightning_own, enable_model_summary=lightning_own, num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps)), default_root_dir=out_dir / "lightning",
    )


def _stop_reason(trainer: L.Trainer, budget: TimeBudget) -> str:
    early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if early is not None and early.stopped_epoch > 0:
        return "early_stopping"
    if budget.stopped or budget.elapsed() >= budget.budget_s:
        return "time_budget"
    return "max_steps" if 0 < trainer.max_steps <= trainer.global_step else "max_epochs"


def _history(trainer: L.Trainer, module: SegmentationModule, budget: TimeBudget, seconds: float,
             n_train: int) -> dict[str, Any]:
    best = module.best
    return {"epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
            "best_val_dice": best["dice"] if best["state"] is not None else float("nan"),
            "best_epoch": best["epoch"], "best_step": best["step"], "stopped_by": _stop_reason(trainer, budget),
            "lr_schedule": "time" if budget.time_bound else "steps", "budget_seconds": round(budget.budget_s, 2),
            "seconds": round(seconds, 2), "fit_seconds": round(budget.fit_s, 2), "val_seconds": round(budget.val_s, 2),
            "per_epoch": module.history, "n_train_cases": n_train, "n_val_cases": module.n_val_cases,
            "resumed_from_step": module.resumed_step, "steps_run": budget.run_steps}


def versions() -> dict[str, str]:
    """Versions of the libraries that shape a trained model."""
    import lightning
    import monai
    import segmentation_models_pytorch as smp

    import livercad

    return {"torch": torch.__version__, "smp": smp.__version__, "monai": monai.__version__,
            "lightning": lightning.__version__, "livercad": livercad.__version__}


def trained_modalities(rows: Sequence[Any], cfg: Config) -> list[str]:
    """Modality families of the training rows (each row's ``modality`` column, else the config's)."""
    from livercad.modality import family
    from livercad.segment.data import row_modality

    return sorted({family(row_modality(r, cfg.preprocess.modality)) for r in rows})


def segmenter_meta(cfg: Config, module: SegmentationModule, history: dict[str, Any],
                   modalities: list[str] | None = None) -> dict[str, Any]:
    """The metadata stored next to the weights in ``segmenter.pt``.

    ``modalities``: the families trained on (default: the config's one); ``training_domain``:
    :func:`livercad.domain.config_domain` of the cohort.
    """
    from livercad.domain import config_domain
    from livercad.modality import family

    m, pp = cfg.segment.model, cfg.preprocess
    return {
        "kind": "segmenter",
        "config": config_to_dict(cfg),
        "arch": m.arch, "encoder": m.encoder, "in_channels": in_channels_of(m),
        "context": m.context, "extra_channels": m.extra_channels, "decoder_channels": m.decoder_channels,
        "preprocessing": {"modality": pp.modality, "image_size": pp.image_size, "ct_window": list(pp.ct_window),
                          "percentiles": list(pp.percentiles), "context": m.context, "orientation": "RAS",
                          "modalities": modalities or [family(pp.modality)]},
        "training_domain": config_domain(cfg.data.manifest),
        "phantom": cfg.data.phantom.model_dump(mode="json") if cfg.data.manifest is None else None,
        "postprocess": cfg.segment.postprocess.model_dump(mode="json"),
        "weights": module.weights_info.to_dict(),
        "init": module.init,
        "history": history,
        "seed": cfg.segment.train.seed,
        "versions": versions(),
    }


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
    if resume and finished(path, fingerprint_hash(fp)):
        logger.info("segmenter: %s is this run's finished export; nothing to resume", path)
        return path
    ckpt = resume_point(out_dir / "lightning" / "checkpoints", resume)
    L.seed_everything(t.seed, workers=True, verbose=False)
    train_dl, val_dl, steps = _loaders(cfg, rows)
    budget_s = max(t.max_minutes * 60.0 - (time.monotonic() - start) - _EXPORT_RESERVE_S, 1.0)
    total = steps * t.max_epochs if max_steps < 0 else min(max_steps, steps * t.max_epochs)
    budget = TimeBudget(budget_s, len(val_dl), total)
    module = SegmentationModule(cfg, n_val_cases=len(val_dl.dataset.cases), budget=budget)
    trainer = _trainer(cfg, out_dir, budget, steps, progress, max_steps, fp, checkpoint_every_s)
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=ckpt, weights_only=True)
    history = _history(trainer, module, budget, time.monotonic() - start, len(train_dl.dataset.cases))
    state = module.best["state"] if module.best["state"] is not None else module.model.state_dict()
    if trainer.is_global_zero:
        meta = segmenter_meta(cfg, module, history, trained_modalities(rows, cfg))
        save_checkpoint(path, state, {**meta, "resume_key": fingerprint_hash(fp)})
    logger.info("segmenter: best val Dice %.4f after %d steps (%s) -> %s", history["best_val_dice"],
                history["steps"], history["stopped_by"], path)
    return path


__all__ = ["TimeBudget", "SegmentationModule", "train_segmenter", "lr_factor", "segmenter_meta", "versions",
           "run_fingerprint"]

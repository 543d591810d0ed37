"""Lightning pieces of stage-2 training: :class:`ClassifierModule`, :class:`KeepBest`, the trainer and loaders."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from livercad.classify.data import augment_batch
from livercad.classify.infer import aggregate_logits, case_scores
from livercad.config import ClassifyConfig
from livercad.errors import ConfigError
from livercad.runtime.budget import TimeBudget, lr_factor
from livercad.runtime.resume import SafeCheckpointIO


class ClassifierModule(pl.LightningModule):
    """The Lightning module of stage 2: cross entropy on slices, case-level validation score per epoch.

    ``val_case``/``val_area``: case index and liver area of every validation slice; the case probability
    aggregates the slice logits with ``cfg.aggregation`` and :func:`case_scores` scores them.
    """

    def __init__(self, net: nn.Module, groups: list[dict[str, Any]], cfg: ClassifyConfig,
                 augment_channels: int | None, val_case: torch.Tensor, val_area: torch.Tensor,
                 val_y: np.ndarray, budget: TimeBudget) -> None:
        super().__init__()
        self.net, self.groups, self.cfg, self.aug, self.budget = net, groups, cfg, augment_channels, budget
        self.val_case, self.val_area, self.val_y = val_case, val_area, val_y
        self.history: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._val_logits: list[torch.Tensor] = []
        self._val: dict[str, float] = {}
        self.val_proba: np.ndarray | None = None  # case probabilities of the last validation
        self._t0 = time.perf_counter()
        self.resumed_step: int | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["livercad_state"] = {"history": self.history, "losses": self._losses, "val": self._val}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("livercad_state", {})
        self.history, self._losses = list(state.get("history", [])), list(state.get("losses", []))
        self._val, self.resumed_step = dict(state.get("val", {})), int(checkpoint.get("global_step", 0))

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.groups, weight_decay=self.cfg.train.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(self.budget.progress(step)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()  # NCHW: channels-last slows CPU training (backward and AdamW) here

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        x = self._prep(x)
        if self.aug is not None:
            x = augment_batch(x, self.aug)
        loss = F.cross_entropy(self.net(x), y)
        self._losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        self._val_logits.append(self.net(self._prep(batch[0])).float().cpu())

    def on_validation_epoch_end(self) -> None:
        logits, self._val_logits = torch.cat(self._val_logits), []
        mode, k = self.cfg.aggregation, self.cfg.top_k
        cases = [aggregate_logits(logits[self.val_case == i], self.val_area[self.val_case == i], mode, k)
                 for i in range(len(self.val_y))]
        proba = torch.softmax(torch.stack(cases), 1).numpy()
        self._val = case_scores(self.val_y, proba)
        self.val_proba = proba
        self.log("val_score", self._val["score"], prog_bar=True)

    def on_train_epoch_end(self) -> None:
        loss = float(np.mean(self._losses)) if self._losses else float("nan")
        self._losses = []
        rec = {"epoch": self.current_epoch, "train_loss": loss, "seconds": time.perf_counter() - self._t0}
        self.history.append({**rec, **{f"val_{k}": v for k, v in self._val.items()}})


class KeepBest(pl.Callback):
    """Keep (in memory) the weights and validation case probabilities of the epoch with the best ``val_score``."""

    def __init__(self) -> None:
        self.best, self.epoch, self.state = -math.inf, -1, None
        self.val_proba: np.ndarray | None = None

    def state_dict(self) -> dict[str, Any]:
        proba = None if self.val_proba is None else self.val_proba.tolist()
        return {"best": self.best, "epoch": self.epoch, "state": self.state, "val_proba": proba}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.epoch, self.state = float(state["best"]), int(state["epoch"]), state["state"]
        proba = state.get("val_proba")
        self.val_proba = None if proba is None else np.asarray(proba, dtype=np.float64)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        score = float(trainer.callback_metrics.get("val_score", -math.inf))
        if score > self.best:
            self.best, self.epoch = score, trainer.current_epoch
            self.state = {k: v.detach().clone() for k, v in module.net.state_dict().items()}
            proba = getattr(module, "val_proba", None)
            self.val_proba = None if proba is None else np.array(proba, dtype=np.float64)


def make_trainer(cfg: ClassifyConfig, minutes_left: float, callbacks: list[pl.Callback], has_val: bool,
             progress: bool, io: SafeCheckpointIO | None) -> pl.Trainer:
    """The single-process Lightning trainer of stage 2 (refuses multi-device settings with a ConfigError)."""
    t = cfg.train
    if t.num_nodes > 1 or str(t.strategy).startswith(("ddp", "fsdp", "deepspeed")) or t.devices not in (1, "1"):
        raise ConfigError(f"classify.train: stage 2 trains in one process (devices=1, num_nodes=1, no ddp); got "
                          f"devices={t.devices}, num_nodes={t.num_nodes}, strategy={t.strategy}")
    from livercad.runtime.progress import training_progress  # livercad's bar, or Lightning's own (--verbose)

    callbacks, lightning_own = training_progress(callbacks, enabled=progress, description="stage 2")
    return pl.Trainer(
        max_epochs=t.max_epochs, max_time=timedelta(minutes=max(minutes_left, 0.05) + 0.5), accelerator=t.accelerator,
        devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,  # type: ignore[arg-type]
        callbacks=callbacks, logger=False, enable_checkpointing=io is not None, enable_progress_bar=lightning_own,
        plugins=[io] if io is not None else None,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1.0 if has_val else 0,
        log_every_n_steps=1, limit_train_batches=t.steps_per_epoch or 1.0)


def make_loader(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None, cfg: ClassifyConfig,
            seed: int = 0) -> DataLoader:
    """Validation (``weights`` None: every slice once, in order) or weighted-sampling training loader."""
    t = cfg.train
    if weights is None:  # validation: every slice once, in order
        return DataLoader(TensorDataset(x, y), batch_size=max(t.batch_size, 64), num_workers=t.num_workers)
    n = (t.steps_per_epoch or math.ceil(len(y) / t.batch_size)) * t.batch_size
    sampler = WeightedRandomSampler(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return DataLoader(TensorDataset(x, y), batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                      drop_last=len(y) > t.batch_size)


__all__ = ["ClassifierModule", "KeepBest", "make_loader", "make_trainer"]

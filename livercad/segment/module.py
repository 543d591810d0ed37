"""Lightning pieces of stage-1 training: :class:`SegmentationModule` and its trainer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from monai.losses import DiceCELoss
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from livercad.config import Config
from livercad.runtime.budget import TimeBudget, lr_factor
from livercad.runtime.resume import LastCheckpoint, SafeCheckpointIO, checkpoint_dir
from livercad.segment.model import build_segmenter_with_info, load_init_weights


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
        net = cfg.segment.model  # segment.init replaces every weight: the encoder's own are not resolved (nor fetched)
        net = net.model_copy(update={"encoder_weights": "none"}) if cfg.segment.init else net
        self.model, self.weights_info = build_segmenter_with_info(net)
        self.init = load_init_weights(self.model, cfg.segment.init) if cfg.segment.init else None
        self.model = self.model.to(memory_format=torch.channels_last)
        # segment.ema: an exponential moving average of the weights (torch's AveragedModel, buffers included);
        # a submodule, so Lightning checkpoints (and resumes) it with the rest
        # (no gradients: the optimiser never sees it, and DDP must not wait for its gradients)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.segment.ema), use_buffers=True)
                    .requires_grad_(False) if cfg.segment.ema else None)
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

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The network validation measures and the export keeps: the EMA weights when ``segment.ema`` is set."""
        return self.ema.module if self.ema is not None else self.model

    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3, self.n_val_cases, device=self.device)

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y, case = batch
        logits = self.evaluated(x.contiguous(memory_format=torch.channels_last))
        pred = (logits > 0).float()  # logit > 0  <=>  probability > 0.5
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
            state = {k: v.detach().cpu().clone() for k, v in self.evaluated.state_dict().items()}
            self.best = {"dice": dice, "epoch": int(self.current_epoch), "step": int(self.global_step), "state": state}

    def configure_optimizers(self) -> dict[str, Any]:
        t = self.cfg.segment.train
        opt = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(self.budget.progress(step)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def make_trainer(cfg: Config, out_dir: Path, budget: TimeBudget, steps: int, progress: bool, max_steps: int,
                 fp: dict[str, Any], every_s: float) -> L.Trainer:
    """The stage-1 trainer: time budget, best and ``last.ckpt`` checkpoints (atomic, fingerprinted), early stop."""
    t, ckpt_dir = cfg.segment.train, checkpoint_dir(out_dir)
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


def stop_reason(trainer: L.Trainer, budget: TimeBudget) -> str:
    """Why training ended: ``early_stopping``, ``time_budget``, ``max_steps`` or ``max_epochs``."""
    early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if early is not None and early.stopped_epoch > 0:
        return "early_stopping"
    if budget.stopped or budget.elapsed() >= budget.budget_s:
        return "time_budget"
    return "max_steps" if 0 < trainer.max_steps <= trainer.global_step else "max_epochs"


__all__ = ["SegmentationModule", "make_trainer", "stop_reason"]

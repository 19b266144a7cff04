"""One training run's model and optimisation (``Trainer``), and the loop over one epoch."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from hpa.classes import NUM_CLASSES
from hpa.metrics import f1_per_class, macro_f1
from hpa.models.losses import build_loss
from hpa.thresholds import fit_per_class, predict
from hpa.training import distributed
from hpa.training.augment import AugmentConfig, augment_batch
from hpa.training.config import TrainConfig, build_from_config, stage_at
from hpa.training.device import autocast_dtype, pick_device
from hpa.training.distributed import Ranks
from hpa.training.loader import progress
from hpa.training.optim import build_optimizer, build_schedule


class Trainer:
    """The model, its optimisation and the device-specific settings of one training run (one rank's)."""

    def __init__(self, cfg: TrainConfig, stats: dict, y_train: np.ndarray, steps_per_epoch: int,
                 ranks: Ranks | None = None):
        self.cfg = cfg
        self.ranks = ranks or distributed.single(pick_device())
        self.device = self.ranks.device
        cuda = self.device.type == "cuda"
        self.model = build_from_config(cfg, stats).to(self.device)
        self.memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        params = dataclasses.asdict(cfg)
        self.stages = cfg.stage_losses()
        self.losses = [build_loss(loss, params, y_train).to(self.device) for _, loss, _ in self.stages]
        self.loss_fn = self.losses[0]
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.body_lr_mult)
        self.scheduler = build_schedule(
            self.optimizer, cfg.schedule, cfg.epochs, math.ceil(steps_per_epoch / cfg.accumulate),
            cfg.warmup_epochs, step_epochs=cfg.step_epochs, gamma=cfg.step_gamma,
            epoch_factor=lambda epoch: self.stages[stage_at(self.stages, epoch)][2],
        )
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.predict = torch.compile(self.model) if cfg.compile else self.model
        self.forward = self._parallel() if self.ranks.distributed else self.predict
        self.augment = AugmentConfig.from_dict(cfg.augment)
        if cuda:
            torch.backends.cudnn.benchmark = True

    def _parallel(self):
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # A frozen body sends no gradients for a while; DDP must be told to expect that.
        ddp = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                      find_unused_parameters=self.cfg.freeze_epochs > 0)
        return torch.compile(ddp) if self.cfg.compile else ddp

    def start_epoch(self, epoch: int) -> None:
        """Stage loss and frozen body for ``epoch`` (the learning rate follows the schedule)."""
        self.loss_fn = self.losses[stage_at(self.stages, epoch)]
        for p in self.model.body_parameters():
            p.requires_grad_(epoch > self.cfg.freeze_epochs)

    def compute_loss(self, x, y):
        """Classification loss, plus the decoder's reconstruction error when the model has one (dual loss)."""
        if not self.cfg.reconstruction_weight:
            return self.loss_fn(self.forward(x).float(), y)
        logits, reconstruction = self.forward(x, reconstruct=True)
        target = self.model.normalize(x)
        return self.loss_fn(logits.float(), y) + self.cfg.reconstruction_weight * F.mse_loss(
            reconstruction.float(), target
        )

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x):
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


# Steps between checks that the training loss is finite. Each check waits for the device to
# finish; checking every step would make the GPU wait for the host twice per step.
FINITE_CHECK_STEPS = 16


def check_finite(total: torch.Tensor, seen: int) -> None:
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"training loss became {total.item()} within the {FINITE_CHECK_STEPS} steps before image "
            f"{seen}; lower lr, set clip_grad_norm, or check the inputs"
        )


def train_one_epoch(trainer: Trainer, loader, generator: torch.Generator) -> dict:
    """One pass over ``loader``; returns mean loss, images/s and the time spent waiting for data.

    The loss is summed on the device and read back every ``FINITE_CHECK_STEPS`` steps and at
    the end, so the host never waits on the device between those.
    """
    model, cfg = trainer.model, trainer.cfg
    model.train()
    total, seen, waiting = torch.zeros((), device=trainer.device), 0, 0.0
    start = tick = time.perf_counter()
    trainer.optimizer.zero_grad(set_to_none=True)
    batches = progress(loader, desc="train", total=len(loader))
    for step, (x, y) in enumerate(batches, 1):
        waiting += time.perf_counter() - tick
        x, y = trainer.to_device(x), y.to(trainer.device, non_blocking=True)
        x = augment_batch(x, trainer.augment, generator)
        update = step % cfg.accumulate == 0 or step == len(loader)
        # Between accumulation steps, ranks keep their gradients local: one all-reduce per update.
        sync = contextlib.nullcontext() if update or not trainer.ranks.distributed else trainer.forward.no_sync()
        with sync:
            with trainer.autocast():
                loss = trainer.compute_loss(x, y)
            trainer.scaler.scale(loss / cfg.accumulate).backward()
        total += loss.detach().float() * len(x)
        seen += len(x)
        if step % FINITE_CHECK_STEPS == 0 or step == len(loader):
            check_finite(total, seen)
        if update:
            if cfg.clip_grad_norm:
                trainer.scaler.unscale_(trainer.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.scheduler.step()
        tick = time.perf_counter()
    seconds = time.perf_counter() - start
    total, all_seen = distributed.sum_over_ranks(trainer.ranks, float(total), seen)
    return {"train_loss": total / max(all_seen, 1), "images_per_s": all_seen / max(seconds, 1e-9),
            "data_wait_fraction": waiting / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(trainer: Trainer, loader) -> tuple[np.ndarray, dict]:
    """Validation probabilities and metrics: loss, macro F1 at 0.5 and at fitted thresholds.

    Each rank scores its shard of the validation images (``loader``); the
    shards are gathered in order, so every rank holds the same result.
    """
    trainer.model.eval()
    distributed.broadcast_buffers(trainer.model, trainer.ranks)
    probs, targets, losses = [np.zeros((0, NUM_CLASSES), np.float32)], [np.zeros((0, NUM_CLASSES))], [np.zeros(0)]
    for x, y in progress(loader, desc="validate"):
        x, y = trainer.to_device(x), y.to(trainer.device, non_blocking=True)
        with trainer.autocast():
            logits = trainer.predict(x).float()
        losses.append(np.full(1, trainer.loss_fn(logits, y).item() * len(x)))
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, y, loss = distributed.gather_rows(trainer.ranks, *(np.concatenate(a) for a in (probs, targets, losses)))
    y = y.astype(bool)
    # Thresholds fitted on the same images: optimistic, but it ranks epochs by
    # what the threshold stage will make of them.
    fitted = predict(p, fit_per_class(p, y))
    metrics = {"val_loss": float(loss.sum() / len(p)), "val_macro_f1": macro_f1(y, p >= 0.5),
               "val_macro_f1_fitted": macro_f1(y, fitted)}
    metrics.update({f"f1_{k}": v for k, v in enumerate(f1_per_class(y, fitted))})
    return p, metrics

"""One training run (``Trainer``) and the pass over one epoch that every training task shares.

What differs between a classifier and the ArcFace embedding is a *task*: the loss
of a batch, what the epoch reports besides it, a learning-rate factor per epoch, and
which weights a checkpoint keeps. Everything else — device placement, channels_last,
AMP and loss scaling, ``compile``, DistributedDataParallel, accumulation, clipping,
the finite-loss check, freezing the body — exists once, here.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from hpa.config.spec import LoopConfig
from hpa.loop.augment import AugmentConfig, augment_batch
from hpa.loop.optim import build_optimizer, build_schedule
from hpa.runtime import distributed
from hpa.runtime.device import autocast_dtype, pick_device
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import progress


class Task(Protocol):
    """What a kind of training adds to the shared loop."""

    def lr_factor(self, epoch: int) -> float: ...

    def start_epoch(self, epoch: int) -> None: ...

    def loss(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The batch's mean loss, and sums over its images of anything else the epoch reports."""

    def epoch_metrics(self, sums: dict[str, float], seen: int) -> dict: ...

    # The validation metric ``keep: best`` ranks epochs by (higher is better); None if the task has none.
    score: str | None

    def logged(self, row: dict) -> dict:
        """What of an epoch's history row goes to the log line."""

    def snapshot(self, trainer: Trainer) -> dict:
        """The weights a checkpoint keeps (CPU copies), by name."""


class Trainer:
    """A model with its optimiser, schedule, precision and device settings: one rank's training run."""

    def __init__(self, cfg: LoopConfig, model: torch.nn.Module, task: Task, steps_per_epoch: int,
                 ranks: Ranks | None = None, *, crop: int | None = None, find_unused_parameters: bool = False,
                 autotune: bool = True):
        self.cfg, self.task, self.crop = cfg, task, crop
        self.ranks = ranks or distributed.single(pick_device())
        self.device = self.ranks.device
        cuda = self.device.type == "cuda"
        self.memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.device).to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.body_lr_mult)
        self.scheduler = build_schedule(
            self.optimizer, cfg.schedule, cfg.epochs, math.ceil(steps_per_epoch / cfg.accumulate),
            cfg.warmup_epochs, step_epochs=cfg.step_epochs, gamma=cfg.step_gamma, epoch_factor=task.lr_factor,
        )
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.predict = torch.compile(self.model) if cfg.compile else self.model
        self.forward = self._parallel(find_unused_parameters) if self.ranks.distributed else self.predict
        self.augment = AugmentConfig.from_dict(cfg.augment)
        if cuda:  # cuDNN's autotuning: seconds at start-up, paid back only by steps that keep the GPU busy
            torch.backends.cudnn.benchmark = autotune

    def _parallel(self, find_unused_parameters: bool):
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # A frozen body sends no gradients for a while; DDP must be told to expect that.
        ddp = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                      find_unused_parameters=find_unused_parameters or self.cfg.freeze_epochs > 0)
        return torch.compile(ddp) if self.cfg.compile else ddp

    def start_epoch(self, epoch: int) -> None:
        """The task's per-epoch settings, and the body frozen for the first ``freeze_epochs``."""
        self.task.start_epoch(epoch)
        for p in self.model.body_parameters():
            p.requires_grad_(epoch > self.cfg.freeze_epochs)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x):
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    STATEFUL = ("model", "optimizer", "scheduler", "scaler")

    def state(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self.STATEFUL}

    def load_state(self, state: dict) -> None:
        for name in self.STATEFUL:
            getattr(self, name).load_state_dict(state[name])


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
    """One pass over ``loader``; returns mean loss, the task's metrics, images/s and the data-wait share.

    Sums stay on the device and are read back every ``FINITE_CHECK_STEPS`` steps and at
    the end, so the host never waits on the device between those.
    """
    trainer.model.train()
    sums, seen, waiting = {"loss": torch.zeros((), device=trainer.device)}, 0, 0.0
    start = tick = time.perf_counter()
    trainer.optimizer.zero_grad(set_to_none=True)
    batches = prefetch(progress(loader, desc="train", total=len(loader)), trainer)
    for step, (x, y) in enumerate(batches, 1):
        waiting += time.perf_counter() - tick
        update = step % trainer.cfg.accumulate == 0 or step == len(loader)
        loss, extra = train_step(trainer, x, y, generator, update)
        sums["loss"] += loss * len(x)
        for name, value in extra.items():
            sums[name] = sums.get(name, 0) + value.detach().float()
        seen += len(x)
        if step % FINITE_CHECK_STEPS == 0 or step == len(loader):
            check_finite(sums["loss"], seen)
        tick = time.perf_counter()
    seconds = max(time.perf_counter() - start, 1e-9)
    *totals, all_seen = distributed.sum_over_ranks(trainer.ranks, *(float(v) for v in sums.values()), seen)
    totals = dict(zip(sums, totals))
    return {"train_loss": totals.pop("loss") / max(all_seen, 1), **trainer.task.epoch_metrics(totals, all_seen),
            "images_per_s": all_seen / seconds, "data_wait_fraction": waiting / seconds}


def train_step(trainer: Trainer, x, y, generator: torch.Generator, update: bool = True):
    """Augment, forward, backward and (with ``update``) step, on a batch already on the device; no host wait.

    Returns the batch's mean loss (detached, on the device) and the task's extra sums.
    """
    x = augment_batch(x, trainer.augment, generator, crop=trainer.crop)
    # Between accumulation steps, ranks keep their gradients local: one all-reduce per update.
    sync = contextlib.nullcontext() if update or not trainer.ranks.distributed else trainer.forward.no_sync()
    with sync:
        with trainer.autocast():
            loss, extra = trainer.task.loss(trainer, x, y)
        trainer.scaler.scale(loss / trainer.cfg.accumulate).backward()
    if update:
        step_optimizer(trainer)
    return loss.detach().float(), extra


def prefetch(batches, trainer: Trainer):
    """(x, y) on the device; on CUDA the next batch is copied on a side stream while this one computes."""
    if trainer.device.type != "cuda":
        yield from ((trainer.to_device(x), y.to(trainer.device, non_blocking=True)) for x, y in batches)
        return
    side, compute = torch.cuda.Stream(trainer.device), torch.cuda.current_stream(trainer.device)

    def copy(batch):
        with torch.cuda.stream(side):
            x, y = batch
            return trainer.to_device(x), y.to(trainer.device, non_blocking=True)

    ahead = None
    for batch in batches:
        loaded = copy(batch)
        if ahead is not None:
            yield ahead
        compute.wait_stream(side)
        for t in loaded:
            t.record_stream(compute)  # the compute stream uses memory the side stream allocated
        ahead = loaded
    if ahead is not None:
        yield ahead


def step_optimizer(trainer: Trainer) -> None:
    """One update from the accumulated gradients: unscale, clip, step, and advance the schedule."""
    if trainer.cfg.clip_grad_norm:
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.cfg.clip_grad_norm)
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scheduler.step()

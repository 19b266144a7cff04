"""The epoch loop every training task shares: resume, train an epoch, evaluate, keep, save.

After every epoch the full training state goes to ``last.pt`` beside the checkpoint
(atomically), and a rerun of the same config on the same rows resumes from it: batches
and augmentation are seeded per epoch, so a resumed run reproduces an uninterrupted one.
Under several ranks every rank runs the loop and takes the same decisions; rank 0 writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hpa.loop.trainer import Trainer, train_one_epoch
from hpa.runtime.checkpoint import read_checkpoint, save_checkpoint
from hpa.runtime.loader import progress

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What the loop carries from epoch to epoch (and ``last.pt`` across a restart)."""

    history: list[dict] = field(default_factory=list)
    kept: dict | None = None  # the checkpoint of the epoch kept so far
    kept_probs: np.ndarray | None = None  # its validation probabilities (the OOF table)

    def to_data(self) -> dict:
        """The run as plain values for ``last.pt`` (no pickled class: a safe ``torch.load`` opens it)."""
        return {"history": self.history, "kept": self.kept, "kept_probs": self.kept_probs}

    @classmethod
    def from_data(cls, data: dict) -> Run:
        probs = data["kept_probs"]
        return cls(data["history"], data["kept"], None if probs is None else probs.cpu().numpy())

    @property
    def epoch(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0

    @property
    def stale(self) -> int:
        """Epochs since the kept one."""
        return 0 if self.kept is None else self.epoch - self.kept["epoch"]


@dataclass
class Plan:
    """What one fit does besides training: where it saves, how it validates and which epoch it keeps."""

    checkpoint: Path
    identity: dict  # what a resumable last.pt must match
    config: dict  # stored in the checkpoint, enough to rebuild the model
    validate: Callable[[Trainer], tuple[np.ndarray, dict]] | None = None
    validate_every: int = 1
    keep: str = "last"  # or "best" by the task's score
    patience: int | None = None

    @property
    def last(self) -> Path:
        return self.checkpoint.with_name("last.pt")


def resume(trainer: Trainer, plan: Plan) -> Run:
    if not plan.last.exists():
        return Run()
    # On the CPU: load_state puts weights and optimizer state on the trainer's device, while the
    # kept epoch's weights must stay CPU tensors, since model.pt is written from them.
    saved = read_checkpoint(plan.last, torch.device("cpu"))
    if saved.get("identity") != plan.identity:
        log.info("ignoring %s: written by a different config or fold", plan.last)
        return Run()
    trainer.load_state(saved["state"])
    run = Run.from_data(saved["run"])
    log.info("resuming from %s after epoch %d", plan.last, run.epoch)
    return run


def epoch_seed(cfg, epoch: int) -> int:
    """The seed of one epoch's batches; its augmentation draws from the next one (per rank)."""
    return cfg.seed * 100_003 + epoch


def train_epoch(trainer: Trainer, loader, epoch: int) -> dict:
    trainer.start_epoch(epoch)
    seed = epoch_seed(trainer.cfg, epoch)
    loader.batch_sampler.set_epoch(epoch)
    row = {"epoch": epoch, "lr": trainer.optimizer.param_groups[-1]["lr"]}
    row.update(train_one_epoch(trainer, loader, torch.Generator().manual_seed(seed + 1 + 7919 * trainer.ranks.rank)))
    return row


def keep_epoch(trainer: Trainer, plan: Plan, run: Run, row: dict, probs) -> None:
    """Keep this epoch if the plan says so: always with keep: last, on a better score with keep: best."""
    kept, score = run.kept, trainer.task.score
    if plan.keep == "last" or kept is None or row[score] > kept["metrics"][score]:
        # Weights, config, metrics and epoch, CPU tensors and plain values only: a plain
        # torch.load (weights_only) opens it anywhere. The optimizer's state belongs to last.pt, which resumes training.
        run.kept = {**trainer.task.snapshot(trainer), "epoch": row["epoch"], "config": plan.config, "metrics": row}
        run.kept_probs = probs


def save_progress(trainer: Trainer, plan: Plan, run: Run) -> None:
    if trainer.ranks.main:
        save_checkpoint({"identity": plan.identity, "state": trainer.state(), "run": run.to_data()}, plan.last)


def finish(trainer: Trainer, plan: Plan, run: Run) -> None:
    if trainer.ranks.main:
        save_checkpoint(run.kept, plan.checkpoint)
        plan.last.unlink(missing_ok=True)


def fit(trainer: Trainer, loader, plan: Plan) -> Run:
    """Train ``trainer`` for its config's epochs on ``loader`` as ``plan`` says; write the kept checkpoint."""
    run = resume(trainer, plan)
    epochs = trainer.cfg.epochs
    for epoch in progress(range(run.epoch + 1, epochs + 1), desc="epochs", initial=run.epoch, total=epochs):
        if plan.patience is not None and run.stale >= plan.patience:
            log.info("early stop: no improvement for %d epochs", run.stale)
            break
        row = train_epoch(trainer, loader, epoch)
        # With keep: last, validation only draws the learning curve, so it may skip epochs;
        # the kept (last) epoch is always validated, since its probabilities are the OOF table.
        validate = plan.validate is not None and (epoch % plan.validate_every == 0 or epoch == epochs)
        probs = None
        if validate:
            probs, metrics = plan.validate(trainer)
            row.update(metrics)
        run.history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in trainer.task.logged(row).items()})
        if validate or plan.validate is None:
            keep_epoch(trainer, plan, run, row, probs)
        save_progress(trainer, plan, run)
    finish(trainer, plan, run)
    return run

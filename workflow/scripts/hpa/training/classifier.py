"""The classification task of the shared training loop: staged losses, the decoder's loss, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from hpa.classes import NUM_CLASSES
from hpa.crops import center
from hpa.metrics import f1_per_class, macro_f1
from hpa.models.factory import build_from_config
from hpa.models.losses import build_loss
from hpa.runtime import distributed
from hpa.runtime.device import pick_device
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import progress
from hpa.thresholds import fit_per_class, predict
from hpa.training.checkpoint import cpu_state
from hpa.training.config import TrainConfig, stage_at
from hpa.training.trainer import Trainer

# What ``keep: best`` ranks epochs by.
SCORE = "val_macro_f1_fitted"


class ClassifierTask:
    """28 sigmoid outputs trained with the loss of the current stage (plus reconstruction, if any)."""

    def __init__(self, cfg: TrainConfig, y_train: np.ndarray, device: torch.device):
        self.cfg = cfg
        params = dataclasses.asdict(cfg)
        self.stages = cfg.stage_losses()
        self.losses = [build_loss(loss, params, y_train).to(device) for _, loss, _ in self.stages]
        self.loss_fn = self.losses[0]

    def lr_factor(self, epoch: int) -> float:
        return self.stages[stage_at(self.stages, epoch)][2]

    def start_epoch(self, epoch: int) -> None:
        self.loss_fn = self.losses[stage_at(self.stages, epoch)]

    def loss(self, trainer: Trainer, x, y):
        """Classification loss, plus the decoder's reconstruction error when the model has one (dual loss)."""
        if not self.cfg.reconstruction_weight:
            return self.loss_fn(trainer.forward(x).float(), y), {}
        logits, reconstruction = trainer.forward(x, reconstruct=True)
        target = trainer.model.normalize(x)
        mse = F.mse_loss(reconstruction.float(), target)
        return self.loss_fn(logits.float(), y) + self.cfg.reconstruction_weight * mse, {}

    def epoch_metrics(self, sums: dict[str, float], seen: int) -> dict:
        return {}

    def snapshot(self, trainer: Trainer) -> dict:
        return {"model": cpu_state(trainer.model)}


def classifier_trainer(cfg: TrainConfig, stats: dict, y_train: np.ndarray, steps_per_epoch: int,
                       ranks: Ranks | None = None, crop: int | None = None) -> Trainer:
    """A ``Trainer`` of the network ``cfg`` describes, with its classification task."""
    ranks = ranks or distributed.single(pick_device())
    model = build_from_config(dataclasses.asdict(cfg), stats)
    return Trainer(cfg, model, ClassifierTask(cfg, y_train, ranks.device), steps_per_epoch, ranks, crop=crop)


@torch.no_grad()
def evaluate(trainer: Trainer, loader) -> tuple[np.ndarray, dict]:
    """Validation probabilities and metrics: loss, macro F1 at 0.5 and at fitted thresholds.

    Each rank scores its shard of the validation images (``loader``); the
    shards are gathered in order, so every rank holds the same result.
    """
    trainer.model.eval()
    distributed.broadcast_buffers(trainer.model, trainer.ranks)
    loss_fn = trainer.task.loss_fn
    probs, targets, losses = [np.zeros((0, NUM_CLASSES), np.float32)], [np.zeros((0, NUM_CLASSES))], [np.zeros(0)]
    for x, y in progress(loader, desc="validate"):
        # Training on crops: validation sees the centre crop (predict runs the whole crop grid).
        x, y = trainer.to_device(center(x, trainer.crop)), y.to(trainer.device, non_blocking=True)
        with trainer.autocast():
            logits = trainer.predict(x).float()
        losses.append(np.full(1, loss_fn(logits, y).item() * len(x)))
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, y, loss = distributed.gather_rows(trainer.ranks, *(np.concatenate(a) for a in (probs, targets, losses)))
    y = y.astype(bool)
    # Thresholds fitted on the same images: optimistic, but it ranks epochs by
    # what the threshold stage will make of them.
    fitted = predict(p, fit_per_class(p, y))
    metrics = {"val_loss": float(loss.sum() / len(p)), "val_macro_f1": macro_f1(y, p >= 0.5),
               SCORE: macro_f1(y, fitted)}
    metrics.update({f"f1_{k}": v for k, v in enumerate(f1_per_class(y, fitted))})
    return p, metrics

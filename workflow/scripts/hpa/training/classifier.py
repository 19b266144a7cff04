"""The classification task of the shared training loop (staged losses, the decoder's loss, validation), and
``fit_fold``, which trains a classifier on one fold with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hpa.classes import Vocabulary
from hpa.config.spec import TrainConfig
from hpa.crops import center
from hpa.labels import sampling
from hpa.loop.fit import Plan, epoch_seed, fit
from hpa.loop.snapshot import cpu_state, run_identity
from hpa.loop.trainer import Trainer
from hpa.metrics import f1_per_class, macro_f1
from hpa.models.factory import build_from_config
from hpa.models.losses import build_loss
from hpa.runtime import distributed
from hpa.runtime.device import pick_device, seed_everything
from hpa.runtime.distributed import Ranks
from hpa.runtime.gpu_memory import GpuWork, compute_bound
from hpa.runtime.loader import CachedImages, make_loader, progress, training_loader
from hpa.thresholds import fit_per_class, predict
from hpa.training.config import stage_at


class ClassifierTask:
    """One sigmoid output per class, trained with the loss of the current stage (plus reconstruction, if any)."""

    # What ``keep: best`` ranks epochs by.
    score = "val_macro_f1_fitted"

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

    def logged(self, row: dict) -> dict:
        """The epoch's log line: everything but the per-class F1s (they go to the history)."""
        return {k: v for k, v in row.items() if not k.startswith("f1_")}

    def snapshot(self, trainer: Trainer) -> dict:
        return {"model": cpu_state(trainer.model)}


def classifier_trainer(cfg: TrainConfig, stats: dict, y_train: np.ndarray, steps_per_epoch: int,
                       ranks: Ranks | None = None, crop: int | None = None, *, vocabulary: Vocabulary,
                       image_size: int | None = None) -> Trainer:
    """A ``Trainer`` of the network ``cfg`` describes for the dataset's ``vocabulary``, with its classification task.
    ``image_size`` (the model's input side) turns cuDNN's autotuning off for steps too small to pay for it."""
    ranks = ranks or distributed.single(pick_device())
    model = build_from_config(dataclasses.asdict(cfg), stats, vocabulary)
    autotune = image_size is None or cudnn_autotune_pays(cfg, image_size, vocabulary.n_channels)
    return Trainer(cfg, model, ClassifierTask(cfg, y_train, ranks.device), steps_per_epoch, ranks, crop=crop,
                   autotune=autotune)


def cudnn_autotune_pays(cfg: TrainConfig, image_size: int, channels: int) -> bool:
    """Whether cuDNN's autotuning (every algorithm tried on each layer shape when first met: seconds of
    start-up) can pay for itself: only where a step keeps the GPU busy (``hpa.runtime.gpu_memory``);
    a demo-sized step is launch-bound whatever algorithm its convolutions use."""
    return compute_bound(GpuWork.of_model(dataclasses.asdict(cfg), image_size, channels))


@torch.no_grad()
def evaluate(trainer: Trainer, loader) -> tuple[np.ndarray, dict]:
    """Validation probabilities and metrics: loss, macro F1 at 0.5 and at fitted thresholds.

    Each rank scores its shard of the validation images (``loader``); the
    shards are gathered in order, so every rank holds the same result.
    """
    trainer.model.eval()
    distributed.broadcast_buffers(trainer.model, trainer.ranks)
    loss_fn = trainer.task.loss_fn
    n_classes = loader.dataset.targets.shape[1]  # a rank's shard may be empty: its arrays keep the width
    probs, targets, losses = [np.zeros((0, n_classes), np.float32)], [np.zeros((0, n_classes))], [np.zeros(0)]
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
               ClassifierTask.score: macro_f1(y, fitted)}
    metrics.update({f"f1_{k}": v for k, v in enumerate(f1_per_class(y, fitted))})
    return p, metrics


def fit_fold(
    cfg: TrainConfig,
    cache: np.ndarray,
    train_rows,
    y_train: np.ndarray,
    val_rows,
    y_val: np.ndarray,
    stats: dict,
    *,
    vocabulary: Vocabulary,
    checkpoint_path,
    workers: int = 0,
    class_weights=None,
    extra: dict | None = None,
    ranks: Ranks | None = None,
    crop: int | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Train a classifier, keep the last epoch (or the best by validation macro F1); return (history, OOF probs).

    With ``crop``, training sees random ``crop`` px windows of the cache images (``hpa.crops``).
    ``vocabulary``: the dataset's classes and channels, which the model is built for and the
    checkpoint records.
    """
    if y_train.shape[1] != vocabulary.n_classes or cache.shape[1] != vocabulary.n_channels:
        raise ValueError(f"labels of {y_train.shape[1]} classes and images of {cache.shape[1]} channels, for a "
                         f"vocabulary of {vocabulary.n_classes} classes and channels {list(vocabulary.channels)}: "
                         "rerun ingest and cache_images after changing labels: or channels:")
    ranks = ranks or distributed.single(pick_device())
    distributed.check_batch_size(cfg.batch_size, ranks)
    seed_everything(cfg.seed)
    train_set = CachedImages(cache, train_rows, y_train)
    weights = None
    if cfg.oversample:
        if class_weights is None:
            class_weights = sampling.class_weights(y_train.sum(0))
        weights = sampling.image_weights(train_set.targets.numpy(), class_weights)
    loader = training_loader(train_set, cfg.batch_size, ranks, weights=weights, workers=workers,
                             seed_of=lambda epoch: epoch_seed(cfg, epoch))
    trainer = classifier_trainer(cfg, stats, y_train, len(loader), ranks, crop, vocabulary=vocabulary,
                                 image_size=crop or cache.shape[-1])
    mine = distributed.shard(len(val_rows), ranks)
    val_set = CachedImages(cache, np.asarray(val_rows)[mine], np.asarray(y_val)[mine])
    val_loader = make_loader(val_set, max(1, cfg.batch_size * 2 // ranks.world), workers=workers)
    plan = Plan(
        checkpoint=Path(checkpoint_path),
        identity=run_identity(cfg.learning_keys(), train_rows),
        config={"model": dataclasses.asdict(cfg), "stats": stats, "vocabulary": vocabulary.to_json(), **(extra or {})},
        validate=lambda trainer: evaluate(trainer, val_loader),
        validate_every=cfg.validate_every, keep=cfg.keep, patience=cfg.patience,
    )
    done = fit(trainer, loader, plan)
    history = pd.DataFrame([{"epoch": row["epoch"], "stage": stage_at(trainer.task.stages, row["epoch"]), **row}
                            for row in done.history])
    return history, done.kept_probs

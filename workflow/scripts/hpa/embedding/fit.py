"""Training the ArcFace embedding on one fold's training images: a task of the shared training loop."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hpa.classes import Vocabulary
from hpa.config.spec import EmbeddingConfig
from hpa.embedding.model import ArcFaceNet, ArcMarginProduct, build_embedder, label_set_classes
from hpa.loop.fit import Plan, epoch_seed, fit
from hpa.loop.snapshot import cpu_state, run_identity
from hpa.loop.trainer import Trainer
from hpa.runtime import distributed
from hpa.runtime.device import pick_device, seed_everything
from hpa.runtime.loader import CachedImages, training_loader

log = logging.getLogger(__name__)


class ArcFaceTask:
    """Cross-entropy on ArcFace logits of the label-set classes; reports the margin-free accuracy."""

    score = None  # the last epoch is kept (see fit_embedding): nothing ranks epochs

    def lr_factor(self, epoch: int) -> float:
        return 1.0

    def start_epoch(self, epoch: int) -> None:
        pass

    def loss(self, trainer: Trainer, x, y):
        y = y.long()
        logits, embedding = trainer.forward(x, y)
        with torch.no_grad():
            correct = (trainer.model.arc(embedding.detach()).argmax(1) == y).sum()
        return F.cross_entropy(logits, y), {"correct": correct}

    def epoch_metrics(self, sums: dict[str, float], seen: int) -> dict:
        return {"train_accuracy": sums["correct"] / max(seen, 1)}

    def logged(self, row: dict) -> dict:
        return row

    def snapshot(self, trainer: Trainer) -> dict:
        """The embedder (what ``embed`` needs) and the ArcFace weights."""
        return {"model": cpu_state(trainer.model.embedder), "arc": cpu_state(trainer.model.arc)}


def fit_embedding(cfg: EmbeddingConfig, cache: np.ndarray, rows, label_sets, stats: dict, *,
                  vocabulary: Vocabulary, checkpoint_path, workers: int = 0, extra: dict | None = None,
                  ranks: distributed.Ranks | None = None) -> pd.DataFrame:
    """Train the ArcFace embedding on ``rows`` of ``cache``; write the checkpoint, return the history.

    The last epoch is kept: choosing one on the fold's held-out images would
    let them shape the model that later searches them. Resumable from ``last.pt``
    like ``hpa.training.classifier.fit_fold`` (the same loop), and data-parallel under ``ranks`` like it.
    """
    ranks = ranks or distributed.single(pick_device())
    distributed.check_batch_size(cfg.batch_size, ranks)
    seed_everything(cfg.seed)
    classes, targets = label_set_classes(label_sets, cfg.min_class_size)
    keep = targets >= 0
    if len(classes) < 2:
        raise ValueError(f"embedding: only {len(classes)} label set(s) have embedding.min_class_size="
                         f"{cfg.min_class_size} training images; lower embedding.min_class_size")
    log.info("ArcFace on %d of %d images, %d label sets", keep.sum(), len(keep), len(classes))
    arc = ArcMarginProduct(cfg.dim, len(classes), cfg.scale, cfg.margin, cfg.easy_margin)
    model = ArcFaceNet(build_embedder(cfg, stats, vocabulary), arc)
    dataset = CachedImages(cache, np.asarray(rows)[keep], targets[keep])
    loader = training_loader(dataset, cfg.batch_size, ranks, workers=workers, seed_of=lambda e: epoch_seed(cfg, e))
    trainer = Trainer(cfg, model, ArcFaceTask(), len(loader), ranks)
    plan = Plan(
        checkpoint=Path(checkpoint_path),
        # The rows and their ArcFace classes: a changed min_class_size must not resume.
        identity=run_identity(cfg.learning_keys(), np.asarray(rows, dtype=np.int64)[keep], targets[keep]),
        config={"embedding": dataclasses.asdict(cfg), "stats": stats, "classes": classes,
                "vocabulary": vocabulary.to_json(), **(extra or {})},
    )
    return pd.DataFrame(fit(trainer, loader, plan).history)

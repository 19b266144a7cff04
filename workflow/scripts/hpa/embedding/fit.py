"""Training the ArcFace embedding on one fold's training images, resumable like a classifier."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hpa.embedding.model import ArcFaceNet, ArcMarginProduct, EmbeddingConfig, build_embedder, label_set_classes
from hpa.files import atomic_path
from hpa.training.augment import AugmentConfig, augment_batch
from hpa.training.checkpoint import cpu_state, run_identity
from hpa.training.device import autocast_dtype, pick_device, seed_everything
from hpa.training.loader import CachedImages, make_loader, progress
from hpa.training.optim import build_optimizer, build_schedule

log = logging.getLogger(__name__)


class ArcFaceRun:
    """Model, optimisation and device settings of one embedding training run."""

    def __init__(self, cfg: EmbeddingConfig, stats: dict, n_classes: int, steps_per_epoch: int):
        self.cfg, self.device = cfg, pick_device()
        cuda = self.device.type == "cuda"
        arc = ArcMarginProduct(cfg.dim, n_classes, cfg.scale, cfg.margin, cfg.easy_margin)
        self.model = ArcFaceNet(build_embedder(cfg, stats), arc).to(self.device)
        self.memory_format = torch.channels_last if cuda else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.body_lr_mult)
        self.scheduler = build_schedule(self.optimizer, cfg.schedule, cfg.epochs, steps_per_epoch, cfg.warmup_epochs)
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.augment = AugmentConfig.from_dict(cfg.augment)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=self.memory_format)
        if self.amp_dtype is None:
            return self.model.embedder(x)
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return self.model.embedder(x).float()

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    STATEFUL = ("model", "optimizer", "scheduler", "scaler")

    def state(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in self.STATEFUL}

    def load_state(self, state: dict) -> None:
        for name in self.STATEFUL:
            getattr(self, name).load_state_dict(state[name])


def train_epoch(run: ArcFaceRun, loader, generator: torch.Generator) -> dict:
    """One pass: mean ArcFace loss, accuracy of the margin-free cosines, images/s."""
    run.model.train()
    total, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for x, y in progress(loader, desc="train", total=len(loader)):
        x = augment_batch(x.to(run.device, non_blocking=True), run.augment, generator)
        y = y.to(run.device).long()
        embedding = run.embed(x)
        loss = F.cross_entropy(run.model.arc(embedding, y), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"embedding loss became {loss.item()} after {seen} images; "
                                     f"lower embedding.lr or embedding.scale")
        run.step(loss)
        with torch.no_grad():
            correct += int((run.model.arc(embedding.detach()).argmax(1) == y).sum())
        total, seen = total + loss.item() * len(x), seen + len(x)
    seconds = max(time.perf_counter() - start, 1e-9)
    return {"train_loss": total / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "images_per_s": seen / seconds}


def _resume(run: ArcFaceRun, last_path: Path, identity: dict) -> list[dict]:
    if not last_path.exists():
        return []
    saved = torch.load(last_path, map_location=run.device, weights_only=False)
    if saved.get("identity") != identity:
        log.info("ignoring %s: written by a different embedding config or fold", last_path)
        return []
    run.load_state(saved["state"])
    log.info("resuming from %s after epoch %d", last_path, len(saved["history"]))
    return saved["history"]


def fit_embedding(cfg: EmbeddingConfig, cache: np.ndarray, rows, label_sets, stats: dict, *,
                  checkpoint_path, workers: int = 0, extra: dict | None = None) -> pd.DataFrame:
    """Train the ArcFace embedding on ``rows`` of ``cache``; write the checkpoint, return the history.

    The last epoch is kept: choosing one on the fold's held-out images would
    let them shape the model that later searches them. After every epoch the
    training state goes to ``last.pt`` (atomically) and a rerun of the same
    config resumes from it, seeded per epoch like ``hpa.training.fit.fit_fold``.
    """
    seed_everything(cfg.seed)
    classes, targets = label_set_classes(label_sets, cfg.min_class_size)
    keep = targets >= 0
    if len(classes) < 2:
        raise ValueError(f"embedding: only {len(classes)} label set(s) have embedding.min_class_size="
                         f"{cfg.min_class_size} training images; lower embedding.min_class_size")
    log.info("ArcFace on %d of %d images, %d label sets", keep.sum(), len(keep), len(classes))
    dataset = CachedImages(cache, np.asarray(rows)[keep], targets[keep])
    run = ArcFaceRun(cfg, stats, len(classes), max(1, len(dataset) // cfg.batch_size))
    last_path = Path(checkpoint_path).with_name("last.pt")
    # The rows and their ArcFace classes: a changed min_class_size must not resume.
    identity = run_identity(dataclasses.asdict(cfg), np.asarray(rows, dtype=np.int64)[keep], targets[keep])
    history = _resume(run, last_path, identity)
    for epoch in progress(range(len(history) + 1, cfg.epochs + 1), desc="epochs"):
        seed = cfg.seed * 100_003 + epoch
        loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed, workers=workers)
        row = {"epoch": epoch, "lr": run.optimizer.param_groups[-1]["lr"]}
        row.update(train_epoch(run, loader, torch.Generator().manual_seed(seed + 1)))
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        with atomic_path(last_path) as tmp:
            torch.save({"identity": identity, "state": run.state(), "history": history}, tmp)
    _save_checkpoint(run, checkpoint_path, history, {"embedding": dataclasses.asdict(cfg), "stats": stats,
                                                     "classes": classes, **(extra or {})})
    last_path.unlink(missing_ok=True)
    return pd.DataFrame(history)


def _save_checkpoint(run: ArcFaceRun, path, history: list[dict], config: dict) -> None:
    """The embedder (what ``embed`` needs), the ArcFace weights, and the config and statistics to rebuild it."""
    with atomic_path(path) as tmp:
        torch.save({"model": cpu_state(run.model.embedder), "arc": cpu_state(run.model.arc),
                    "epoch": len(history), "config": config, "metrics": history[-1] if history else {}}, tmp)

"""Metric learning for label transfer: an ArcFace embedding of whole images.

The 1st place of the Kaggle HPA competition trained a ResNet with ArcFace
(additive angular margin) and gave a test image the labels of its nearest
training image when their cosine similarity was high enough: many test fields
of view have near-twins among the training and HPAv18 images, and copying
their curated labels beats a classifier there (``hpa.transfer`` does the search).

ArcFace needs one class per image, but an HPA image has a label *set*, so the
class here is the label set itself (the Target string): images with identical
label sets are the positives, every other label set a negative. Label sets with
fewer than ``min_class_size`` images among the fold's training rows are left
out of the ArcFace training (a one-image class has no positive pair and would
only be memorised); those images are still embedded and searched. (The 1st
place used antibody identities, which the Kaggle images do not carry.)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .augment import AugmentConfig, augment_batch
from .data import matrix_to_labels, read_manifest
from .images import open_cache
from .io import atomic_path, read_json, write_csv
from .models import build_model
from .neighbours import write_embeddings
from .optim import build_optimizer, build_schedule
from .train import (
    autocast_dtype,
    CachedImages,
    cpu_state,
    fold_rows,
    loader_workers,
    make_loader,
    pick_device,
    progress,
    run_identity,
    seed_everything,
)
from .tta import TTA_TRANSFORMS, dihedral

log = logging.getLogger(__name__)


@dataclass
class EmbeddingConfig:
    """The training keys of the config's ``embedding:`` section (defaults match the schema; a test checks)."""

    arch: str = "resnet50"
    pretrained: str | None = None
    weights: str | None = None
    stem: str = "mean_rg"
    dim: int = 512
    dropout: float = 0.0
    margin: float = 0.5
    scale: float = 30.0
    easy_margin: bool = False
    min_class_size: int = 2
    optimizer: str = "adam"
    lr: float = 1e-3
    body_lr_mult: float = 1.0
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    augment: dict = field(default_factory=lambda: dataclasses.asdict(AugmentConfig()))
    amp: str | None = None
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> EmbeddingConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"embedding: unknown key(s) {sorted(unknown)}; config/README.md lists the known ones")
        cfg = cls(**d)
        cfg.augment = dataclasses.asdict(AugmentConfig.from_dict(cfg.augment))
        return cfg


class ArcMarginProduct(nn.Module):
    """ArcFace logits: s·cos(θ_y + m) for the target class y, s·cos θ_j for every other class j.

    θ_j is the angle between the normalised embedding and class j's normalised
    weight. Past θ + m > π, cos(θ + m) would rise again and reward a worse
    angle, so there the target logit continues linearly as cos θ − m·sin m
    (``th``, ``mm``); with ``easy_margin`` the margin only applies where cos θ > 0.
    """

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.5,
                 easy_margin: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale, self.easy_margin = scale, easy_margin
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.th, self.mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.linear(F.normalize(x.float()), F.normalize(self.weight)).clamp(-1.0, 1.0)
        if labels is None:
            return self.scale * cos
        sin = torch.sqrt((1.0 - cos * cos).clamp(0.0, 1.0))
        phi = cos * self.cos_m - sin * self.sin_m
        phi = torch.where(cos > 0, phi, cos) if self.easy_margin else torch.where(cos > self.th, phi, cos - self.mm)
        target = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(target, phi, cos)


class EmbeddingNet(nn.Module):
    """A ``hpa.models`` network whose head is the embedding layer, then BatchNorm (as the 1st place's)."""

    def __init__(self, net: nn.Module, dim: int):
        super().__init__()
        self.net, self.neck = net, nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.neck(self.net(x))

    def head_parameters(self) -> list[nn.Parameter]:
        return self.net.head_parameters() + list(self.neck.parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        return self.net.body_parameters()


class ArcFaceNet(nn.Module):
    """Embedding network and ArcFace classifier, trained together; only the embedder is kept for search."""

    def __init__(self, embedder: EmbeddingNet, arc: ArcMarginProduct):
        super().__init__()
        self.embedder, self.arc = embedder, arc

    def head_parameters(self) -> list[nn.Parameter]:
        return self.embedder.head_parameters() + list(self.arc.parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        return self.embedder.body_parameters()


def build_embedder(cfg: EmbeddingConfig, stats: dict, *, load_weights: bool = True) -> EmbeddingNet:
    """The embedding network; ``load_weights=False`` when a checkpoint's state dict follows."""
    net = build_model(cfg.arch, stats["mean"], stats["std"],
                      pretrained=cfg.pretrained if load_weights else None, dropout=cfg.dropout,
                      stem=cfg.stem, weights=cfg.weights if load_weights else None, num_classes=cfg.dim)
    return EmbeddingNet(net, cfg.dim)


def label_set_classes(label_sets, min_class_size: int) -> tuple[list[str], np.ndarray]:
    """ArcFace classes (label sets with at least ``min_class_size`` images) and each image's class, -1 if left out."""
    counts = pd.Series(list(label_sets)).value_counts()
    classes = sorted(counts.index[counts >= min_class_size])
    lookup = {s: k for k, s in enumerate(classes)}
    return classes, np.array([lookup.get(s, -1) for s in label_sets], dtype=np.int64)


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
    config resumes from it, seeded per epoch like ``hpa.train.fit_fold``.
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


def load_embedder(path, device=None) -> tuple[EmbeddingNet, dict]:
    """Rebuild the embedding network from its checkpoint alone (config and statistics inside)."""
    device = device or pick_device()
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = build_embedder(EmbeddingConfig.from_dict(ckpt["config"]["embedding"]), ckpt["config"]["stats"],
                           load_weights=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


@torch.no_grad()
def embed_rows(model: EmbeddingNet, cache: np.ndarray, rows, batch_size: int = 64, flips: bool = True,
               workers: int = 0) -> np.ndarray:
    """L2-normalised float32 embeddings of ``rows``; with ``flips``, the normalised mean over the four flips."""
    device = next(model.parameters()).device
    model.eval()
    views = TTA_TRANSFORMS["flips"] if flips else (0,)
    out = [np.zeros((0, model.neck.num_features), dtype=np.float32)]
    for x in progress(make_loader(CachedImages(cache, rows), batch_size, workers=workers), desc="embed"):
        x = x.to(device, non_blocking=True)
        total = sum(F.normalize(model(dihedral(x, t)).float(), dim=1) for t in views)
        out.append(F.normalize(total, dim=1).cpu().numpy().astype(np.float32))
    return np.concatenate(out)


def run_training_job(*, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, embedding: dict,
                     fold: int, checkpoint, history_csv, threads: int = 1) -> None:
    """The ``train_embedding`` rule: one fold's embedding, trained on the other folds' images."""
    torch.set_num_threads(max(1, threads))
    cfg = EmbeddingConfig.from_dict(embedding)
    cache, index = open_cache(cache_npy, cache_index)
    folds = pd.read_csv(folds_csv, dtype={"Id": str})
    (rows, y), _ = fold_rows(index, folds, read_manifest(manifest_csv, split="train"), fold)
    log.info("embedding fold %d: %d training images on %s", fold, len(rows), pick_device())
    history = fit_embedding(cfg, cache, rows, matrix_to_labels(y), read_json(stats_json),
                            checkpoint_path=checkpoint, workers=loader_workers(threads),
                            extra={"fold": fold, "image_size": int(cache.shape[-1])})
    write_csv(history.round(6), history_csv)


def run_embed_job(*, checkpoint, train_npy, train_index, test_npy, test_index, embeddings,
                  batch_size: int, flips: bool, threads: int = 1) -> None:
    """The ``embed`` rule: one fold's embedding of every readable training and test image."""
    torch.set_num_threads(max(1, threads))
    model, ckpt = load_embedder(checkpoint)
    workers, arrays = loader_workers(threads), {}
    for split, npy, index_csv in (("train", train_npy, train_index), ("test", test_npy, test_index)):
        cache, index = open_cache(npy, index_csv)
        ok = index[index["ok"]]
        rows = ok["row"].to_numpy()
        arrays[split] = (ok["Id"].to_numpy(), embed_rows(model, cache, rows, batch_size, flips, workers))
        log.info("fold %s: embedded %d %s images", ckpt["config"].get("fold"), len(ok), split)
    write_embeddings(embeddings, *arrays["train"], *arrays["test"])

"""Training one model on one fold: data loading, the epoch loop, checkpoints."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from .data import labels_to_matrix, read_manifest
from .images import open_cache
from .io import atomic_path, read_json, write_csv
from .losses import build_loss
from .metrics import macro_f1
from .models import build_model
from .thresholds import fit_per_class, predict
from .tta import random_dihedral

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """One entry under ``models:`` in the config (defaults match the schema)."""

    arch: str = "resnet18"
    pretrained: str | None = None
    dropout: float = 0.0
    loss: str = "bce"
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 0.0
    epochs: int = 5
    batch_size: int = 32
    augment: bool = True
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model key(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

# Per-epoch learning-rate schedules, by config name.
SCHEDULES = {
    "constant": lambda optimizer, epochs: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0),
    "cosine": lambda optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs),
}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class CachedImages(Dataset):
    """Rows of the memory-mapped uint8 cache, with their label vectors."""

    def __init__(self, cache: np.ndarray, rows, targets: np.ndarray | None = None):
        self.cache, self.rows = cache, np.asarray(rows)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self.cache[self.rows[i]]))
        return x if self.targets is None else (x, self.targets[i])


def make_loader(dataset, batch_size: int, *, shuffle: bool, seed: int = 0, workers: int = 0) -> DataLoader:
    device = pick_device()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        # A last training batch of one image breaks BatchNorm; dropping the
        # remainder costs under one batch per epoch.
        drop_last=shuffle and len(dataset) > batch_size,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )


def train_one_epoch(model, loader, loss_fn, optimizer, device, augment: torch.Generator | None) -> dict:
    model.train()
    total, seen, start = 0.0, 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = random_dihedral(x, augment)
        loss = loss_fn(model(x), y)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"training loss became {loss.item()} after {seen} images; lower lr or check the inputs"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        seen += len(x)
    seconds = time.perf_counter() - start
    return {"train_loss": total / max(seen, 1), "images_per_s": seen / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(model, loader, loss_fn, device) -> tuple[np.ndarray, dict]:
    """Validation probabilities and metrics: loss, macro F1 at 0.5 and at fitted thresholds."""
    model.eval()
    probs, targets, total = [], [], 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        total += loss_fn(logits, y).item() * len(x)
        probs.append(torch.sigmoid(logits).float().cpu().numpy())
        targets.append(y.cpu().numpy())
    p, y = np.concatenate(probs), np.concatenate(targets).astype(bool)
    return p, {
        "val_loss": total / len(p),
        "val_macro_f1": macro_f1(y, p >= 0.5),
        # Thresholds fitted on the same images: optimistic, but it ranks epochs
        # by what the threshold stage can make of them.
        "val_macro_f1_fitted": macro_f1(y, predict(p, fit_per_class(p, y))),
    }


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(not torch.cuda.is_available(), warn_only=True)


def fit_fold(
    cfg: TrainConfig,
    cache: np.ndarray,
    train_rows,
    y_train: np.ndarray,
    val_rows,
    y_val: np.ndarray,
    stats: dict,
    *,
    checkpoint_path,
    workers: int = 0,
    extra: dict | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Train, keep the epoch with the best validation macro F1; return (history, OOF probs)."""
    seed_everything(cfg.seed)
    device = pick_device()
    model = build_model(cfg.arch, stats["mean"], stats["std"], cfg.pretrained, cfg.dropout).to(device)
    loss_fn = build_loss(cfg.loss)
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = SCHEDULES[cfg.schedule](optimizer, cfg.epochs)
    train_loader = make_loader(CachedImages(cache, train_rows, y_train), cfg.batch_size, shuffle=True, seed=cfg.seed, workers=workers)
    val_loader = make_loader(CachedImages(cache, val_rows, y_val), cfg.batch_size * 2, shuffle=False, workers=workers)
    augment = torch.Generator().manual_seed(cfg.seed + 1) if cfg.augment else None

    history, best, best_probs = [], None, None
    for epoch in range(1, cfg.epochs + 1):
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update(train_one_epoch(model, train_loader, loss_fn, optimizer, device, augment))
        scheduler.step()
        probs, metrics = evaluate(model, val_loader, loss_fn, device)
        row.update(metrics)
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
        if best is None or row["val_macro_f1_fitted"] > best["metrics"]["val_macro_f1_fitted"]:
            best = {
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "config": {"model": dataclasses.asdict(cfg), "stats": stats, **(extra or {})},
                "metrics": row,
            }
            best_probs = probs
    with atomic_path(checkpoint_path) as tmp:
        torch.save(best, tmp)
    return pd.DataFrame(history), best_probs


def load_checkpoint(path, device=None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a checkpoint alone: its config carries arch and statistics."""
    device = device or pick_device()
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = TrainConfig.from_dict(ckpt["config"]["model"])
    stats = ckpt["config"]["stats"]
    model = build_model(cfg.arch, stats["mean"], stats["std"], None, cfg.dropout)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def probability_table(ids, probs: np.ndarray) -> pd.DataFrame:
    cols = {f"p{k}": probs[:, k].round(6) for k in range(probs.shape[1])}
    return pd.DataFrame({"Id": np.asarray(ids), **cols})


def write_history(history: pd.DataFrame, path) -> None:
    write_csv(history.round(6), path)


def fold_rows(index: pd.DataFrame, folds: pd.DataFrame, labels: pd.DataFrame, fold: int):
    """Cache rows, label matrices and Ids of a fold's training and validation images."""
    table = index[index["ok"]].merge(folds, on="Id", validate="one_to_one").merge(
        labels[["Id", "Target"]], on="Id", validate="one_to_one"
    )
    if fold not in set(table["fold"]):
        raise ValueError(f"fold {fold} is not in the folds table (folds 0..{table['fold'].max()})")
    train, val = table[table["fold"] != fold], table[table["fold"] == fold]
    return (
        (train["row"].to_numpy(), labels_to_matrix(train["Target"])),
        (val["row"].to_numpy(), labels_to_matrix(val["Target"]), val["Id"].to_numpy()),
    )


def run_job(
    *, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, model_name: str,
    model_cfg: dict, fold: int, checkpoint, history_csv, oof_csv, threads: int = 1,
) -> None:
    """The ``train`` rule: one model on one fold, from the cache to a checkpoint."""
    torch.set_num_threads(max(1, threads))
    cfg = TrainConfig.from_dict(model_cfg)
    cache, index = open_cache(cache_npy, cache_index)
    labels = read_manifest(manifest_csv, split="train")
    (train_rows, y_train), (val_rows, y_val, val_ids) = fold_rows(index, pd.read_csv(folds_csv, dtype={"Id": str}), labels, fold)
    log.info("%s fold %d: %d training, %d validation images", model_name, fold, len(train_rows), len(val_rows))
    history, oof = fit_fold(
        cfg, cache, train_rows, y_train, val_rows, y_val, read_json(stats_json),
        checkpoint_path=checkpoint,
        workers=loader_workers(threads),
        extra={"name": model_name, "fold": fold, "image_size": int(cache.shape[-1])},
    )
    write_history(history, history_csv)
    write_csv(probability_table(val_ids, oof), oof_csv)


def loader_workers(threads: int) -> int:
    """DataLoader processes: on a GPU they keep it fed; on a CPU they would steal the model's cores."""
    return max(0, threads - 1) if pick_device().type == "cuda" else 0

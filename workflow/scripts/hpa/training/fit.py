"""Fitting one model on one fold: the epoch loop with resume, validation and the kept epoch."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hpa.files import atomic_path
from hpa.labels import sampling
from hpa.training import distributed
from hpa.training.checkpoint import cpu_state, run_identity
from hpa.training.config import TrainConfig, stage_at
from hpa.training.device import pick_device, seed_everything
from hpa.training.distributed import Ranks
from hpa.training.loader import CachedImages, make_loader, progress, training_loader
from hpa.training.trainer import Trainer, evaluate, train_one_epoch

log = logging.getLogger(__name__)


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
    class_weights=None,
    extra: dict | None = None,
    ranks: Ranks | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Train, keep the last epoch (or the best by validation macro F1); return (history, OOF probs).

    After every epoch the full training state goes to ``last.pt`` beside the
    checkpoint (atomically), and a rerun of the same config resumes from it:
    shuffling and augmentation are seeded per epoch, so a resumed run
    reproduces an uninterrupted one. Under ``ranks`` (several processes)
    every rank runs this; all take the same decisions, rank 0 writes the files.
    """
    ranks = ranks or distributed.single(pick_device())
    distributed.check_batch_size(cfg.batch_size, ranks)
    seed_everything(cfg.seed)
    if cfg.oversample and class_weights is None:
        class_weights = sampling.class_weights(y_train.sum(0))
    train_set = CachedImages(cache, train_rows, y_train)
    steps = len(train_set) // cfg.batch_size if len(train_set) > cfg.batch_size else 1
    trainer = Trainer(cfg, stats, y_train, steps, ranks)
    mine = distributed.shard(len(val_rows), ranks)
    val_set = CachedImages(cache, np.asarray(val_rows)[mine], np.asarray(y_val)[mine])
    val_loader = make_loader(val_set, max(1, cfg.batch_size * 2 // ranks.world), workers=workers)
    identity = run_identity(cfg.learning_keys(), train_rows)

    last_path = Path(checkpoint_path).with_name("last.pt")
    history, best, start = [], None, 1
    if last_path.exists():
        saved = torch.load(last_path, map_location=trainer.device, weights_only=False)
        if saved.get("identity") == identity:
            trainer.load_state(saved["state"])
            history, best, start = saved["history"], saved["best"], saved["epoch"] + 1
            log.info("resuming from %s after epoch %d", last_path, saved["epoch"])
        else:
            log.info("ignoring %s: written by a different config or fold", last_path)

    stale = 0 if best is None else history[-1]["epoch"] - best["epoch"]
    for epoch in progress(range(start, cfg.epochs + 1), desc="epochs", initial=start - 1, total=cfg.epochs):
        if cfg.patience is not None and stale >= cfg.patience:
            log.info("early stop: no improvement for %d epochs", stale)
            break
        trainer.start_epoch(epoch)
        seed = cfg.seed * 100_003 + epoch
        loader = training_loader(train_set, cfg, seed, ranks, class_weights=class_weights, workers=workers)
        row = {"epoch": epoch, "stage": stage_at(trainer.stages, epoch), "lr": trainer.optimizer.param_groups[-1]["lr"]}
        row.update(train_one_epoch(trainer, loader, torch.Generator().manual_seed(seed + 1 + 7919 * ranks.rank)))
        # With keep: last, validation only draws the learning curve, so it may skip epochs;
        # the kept (last) epoch is always validated, since its probabilities are the OOF table.
        validate = epoch % cfg.validate_every == 0 or epoch == cfg.epochs
        if validate:
            probs, metrics = evaluate(trainer, val_loader)
            row.update(metrics)
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items() if not k.startswith("f1_")})
        if validate and (cfg.keep == "last" or best is None
                         or row["val_macro_f1_fitted"] > best["metrics"]["val_macro_f1_fitted"]):
            best = {
                # Weights, config, metrics and epoch, CPU tensors only: a plain torch.load opens
                # it anywhere. The optimizer's state belongs to last.pt, which resumes training.
                "model": cpu_state(trainer.model),
                "epoch": epoch,
                "config": {"model": dataclasses.asdict(cfg), "stats": stats, **(extra or {})},
                "metrics": row,
                "val_probs": probs,
            }
            stale = 0
        elif validate:
            stale += 1
        if ranks.main:
            with atomic_path(last_path) as tmp:
                torch.save({"identity": identity, "epoch": epoch, "state": trainer.state(),
                            "history": history, "best": best}, tmp)

    oof = best.pop("val_probs")
    if ranks.main:
        with atomic_path(checkpoint_path) as tmp:
            torch.save(best, tmp)
        last_path.unlink(missing_ok=True)
    return pd.DataFrame(history), oof

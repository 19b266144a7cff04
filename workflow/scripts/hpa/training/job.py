"""The ``train`` rule: one model on one fold, from the cache, labels and folds to a checkpoint."""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pandas as pd
import torch

from hpa.data.cache import open_cache
from hpa.files import read_json, setup_logging, write_csv
from hpa.tables import labels_to_matrix, probability_table, read_manifest
from hpa.runtime import distributed
from hpa.training.config import TrainConfig
from hpa.runtime.device import pick_device
from hpa.runtime.distributed import Ranks
from hpa.training.fit import fit_fold
from hpa.runtime.loader import loader_workers

log = logging.getLogger(__name__)


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


def read_class_weights(path) -> np.ndarray:
    table = pd.read_csv(path).sort_values("class")
    return table["weight"].to_numpy(dtype=float)


def run_job(
    *, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, model_name: str,
    model_cfg: dict, fold: int, checkpoint, history_csv, oof_csv, threads: int = 1,
    sampling_weights=None, image_size: int | None = None,
) -> None:
    """The ``train`` rule: one model on one fold, from the cache to a checkpoint.

    With ``processes: N`` in the model's config, N ranks train it together
    (torchrun's launcher; one per GPU) and this process writes their result.
    """
    cfg = TrainConfig.from_dict(model_cfg)
    job = {
        "cache_npy": cache_npy, "cache_index": cache_index, "stats_json": stats_json, "folds_csv": folds_csv,
        "manifest_csv": manifest_csv, "model_name": model_name, "cfg": cfg, "fold": fold,
        "checkpoint": checkpoint, "threads": threads, "sampling_weights": sampling_weights,
        "image_size": image_size,
        "log_files": log_files(),
    }
    if cfg.processes > 1:
        check_gpus(cfg.processes)
        history, oof, val_ids = distributed.launch(cfg.processes, job)
    else:
        history, oof, val_ids = train_fold_job(job, distributed.single(pick_device()))
    write_csv(history.round(6), history_csv)
    write_csv(probability_table(val_ids, oof), oof_csv)


def check_gpus(processes: int) -> None:
    visible = torch.cuda.device_count()
    if torch.cuda.is_available() and visible < processes:
        raise RuntimeError(
            f"processes: {processes} needs {processes} GPUs but this job sees {visible}; give the train "
            f"rule more GPUs (its gpu resource follows processes) or lower processes"
        )


def train_rank(job: dict):
    """One rank's life under torchrun (``hpa.runtime.rank_worker``): join the group, train, leave.

    ``job["entry"]`` names the function (``module:name``, called with the job and the ranks) that
    trains: the classifier's ``train_fold_job`` unless the job says otherwise (the embedding's).
    """
    ranks = distributed.join()
    if ranks.main and job["log_files"]:
        setup_logging(job["log_files"][0], mode="a")
    module, _, name = job.get("entry", f"{__name__}:train_fold_job").partition(":")
    try:
        return getattr(importlib.import_module(module), name)(job, ranks)
    finally:
        distributed.leave(ranks)


def log_files() -> list[str]:
    """The files this process logs to, for the ranks torchrun starts to append to."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def read_fold(job: dict, ranks: Ranks):
    """This rank's share of the job's threads, then the cache and the fold's rows of a training job
    (classifier or embedding): (cache, (train rows, labels), (validation rows, labels, Ids))."""
    torch.set_num_threads(max(1, job["threads"] // ranks.world))
    cache, index = open_cache(job["cache_npy"], job["cache_index"])
    labels = read_manifest(job["manifest_csv"], split="train")
    folds = pd.read_csv(job["folds_csv"], dtype={"Id": str})
    return (cache, *fold_rows(index, folds, labels, job["fold"]))


def train_fold_job(job: dict, ranks: Ranks):
    """Read the cache, labels and folds of a train job and fit it; returns (history, OOF probs, OOF Ids)."""
    cache, (train_rows, y_train), (val_rows, y_val, val_ids) = read_fold(job, ranks)
    fold = job["fold"]
    # A cache larger than the model's input (data.cache_size): train on random crops of it.
    size = job.get("image_size")
    crop = size if size and size < cache.shape[-1] else None
    log.info("%s fold %d: %d training, %d validation images on %s (%d process%s)", job["model_name"], fold,
             len(train_rows), len(val_rows), ranks.device, ranks.world, "es" if ranks.distributed else "")
    history, oof = fit_fold(
        job["cfg"], cache, train_rows, y_train, val_rows, y_val, read_json(job["stats_json"]),
        checkpoint_path=job["checkpoint"],
        workers=loader_workers(job["threads"] // ranks.world),
        class_weights=read_class_weights(job["sampling_weights"]) if job["sampling_weights"] else None,
        extra={"name": job["model_name"], "fold": fold, "image_size": int(cache.shape[-1]), "crop": crop},
        ranks=ranks,
        crop=crop,
    )
    return history, oof, val_ids

"""A fold's training job as its ranks receive it: a dataclass holding the function each rank calls.

A job with ``processes: N`` runs on N ranks started by torchrun, which pickles the job to
each of them (``hpa.runtime.rank_worker``). The job names its training function as an
object, not as a module string: pickle sends a module-level function by its qualified
name, so the rank imports the code that trains, and the layers can see who calls whom.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from hpa.classes import Vocabulary
from hpa.data.cache import open_cache
from hpa.files import setup_logging
from hpa.runtime import distributed
from hpa.runtime.device import compute_threads, pick_device
from hpa.runtime.distributed import Ranks
from hpa.tables import labels_to_matrix, read_manifest


def log_files() -> list[str]:
    """The files this process logs to, for the ranks torchrun starts to append to."""
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


@dataclass
class FoldJob:
    """One fold's training job (a classifier's or the embedding's), from the cache, labels and folds.

    ``train(job, ranks)`` trains it on one rank and returns what the rule writes; it must be a
    module-level function (pickled by name). ``cfg`` is the training config; its ``processes``
    says how many ranks. ``vocabulary``: the vocabulary file (``results/data/vocabulary.json``),
    the dataset's classes and channels.
    """

    train: Callable[[FoldJob, Ranks], Any]
    cfg: Any
    fold: int
    cache_npy: str
    cache_index: str
    stats_json: str
    folds_csv: str
    manifest_csv: str
    checkpoint: str
    vocabulary: str
    threads: int = 1
    log_files: list[str] = field(default_factory=log_files)


def run_fold_job(job: FoldJob):
    """Train ``job`` on ``cfg.processes`` ranks (torchrun), or in this process; return rank 0's result."""
    processes = job.cfg.processes
    if processes > 1:
        check_gpus(processes)
        return distributed.launch(processes, job)
    return job.train(job, distributed.single(pick_device()))


def check_gpus(processes: int) -> None:
    visible = torch.cuda.device_count()
    if torch.cuda.is_available() and visible < processes:
        raise RuntimeError(
            f"processes: {processes} needs {processes} GPUs but this job sees {visible}; give the train "
            f"rule more GPUs (its gpu resource follows processes) or lower processes"
        )


def train_rank(job: FoldJob):
    """One rank's life under torchrun (``hpa.runtime.rank_worker``): join the group, train, leave."""
    ranks = distributed.join()
    if ranks.main and job.log_files:
        setup_logging(job.log_files[0], mode="a")
    try:
        return job.train(job, ranks)
    finally:
        distributed.leave(ranks)


def fold_rows(index: pd.DataFrame, folds: pd.DataFrame, labels: pd.DataFrame, fold: int, n_classes: int):
    """Cache rows and label matrices (``n_classes`` wide) of a fold's training and validation images, and the
    validation rows' keys (a table: ``Id``). A cache of cell crops (``hpa.cells.crop_job``: a ``cell`` column,
    many rows per Id) gives each crop its image's fold and labels (the weak labels of the cell-level model),
    and its keys are ``Id, cell``."""
    crops = "cell" in index.columns
    per_image = "many_to_one" if crops else "one_to_one"
    table = index[index["ok"]].merge(folds, on="Id", validate=per_image).merge(
        labels[["Id", "Target"]], on="Id", validate=per_image
    )
    if fold not in set(table["fold"]):
        raise ValueError(f"fold {fold} is not in the folds table (folds 0..{table['fold'].max()})")
    train, val = table[table["fold"] != fold], table[table["fold"] == fold]
    return (
        (train["row"].to_numpy(), labels_to_matrix(train["Target"], n_classes)),
        (val["row"].to_numpy(), labels_to_matrix(val["Target"], n_classes),
         val[["Id", "cell"] if crops else ["Id"]].reset_index(drop=True)),
    )


def read_fold(job: FoldJob, ranks: Ranks):
    """This rank's share of the job's threads, then the cache and the fold's rows:
    (cache, (train rows, labels), (validation rows, labels, Ids))."""
    torch.set_num_threads(compute_threads(job.threads // ranks.world))
    cache, index = open_cache(job.cache_npy, job.cache_index)
    vocabulary = Vocabulary.read(job.vocabulary)
    channels = vocabulary.channels
    if cache.shape[1] != len(channels):
        raise ValueError(f"{job.cache_npy} holds {cache.shape[1]} channels, {job.vocabulary} names "
                         f"{len(channels)} ({list(channels)}): rerun cache_images for this vocabulary")
    labels = read_manifest(job.manifest_csv, split="train")
    folds = pd.read_csv(job.folds_csv, dtype={"Id": str})
    return (cache, *fold_rows(index, folds, labels, job.fold, vocabulary.n_classes))

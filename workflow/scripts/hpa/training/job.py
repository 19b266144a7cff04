"""The ``train`` rule: one model on one fold, from the cache, labels and folds to a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa.classes import Vocabulary
from hpa.config.spec import TrainConfig
from hpa.files import read_json, write_csv
from hpa.runtime.distributed import Ranks
from hpa.runtime.job import FoldJob, read_fold, run_fold_job
from hpa.runtime.loader import loader_workers
from hpa.tables import probability_table
from hpa.training.classifier import fit_fold

log = logging.getLogger(__name__)


@dataclass
class ClassifierJob(FoldJob):
    """A classifier's fold: a ``FoldJob`` with the model's name, class weights and input size."""

    model_name: str = ""
    sampling_weights: str | None = None
    image_size: int | None = None


def read_class_weights(path) -> np.ndarray:
    table = pd.read_csv(path).sort_values("class")
    return table["weight"].to_numpy(dtype=float)


def run_job(
    *, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, vocabulary_json, model_name: str,
    model_cfg: dict, fold: int, checkpoint, history_csv, oof_csv, threads: int = 1,
    sampling_weights=None, image_size: int | None = None,
) -> None:
    """The ``train`` rule: one model on one fold, from the cache to a checkpoint; the model has one
    input per channel and one output per class of ``vocabulary_json``.

    With ``processes: N`` in the model's config, N ranks train it together
    (torchrun's launcher; one per GPU) and this process writes their result.
    """
    job = ClassifierJob(
        train=train_fold_job, cfg=TrainConfig.from_dict(model_cfg), fold=fold, cache_npy=cache_npy,
        cache_index=cache_index, stats_json=stats_json, folds_csv=folds_csv, manifest_csv=manifest_csv,
        checkpoint=checkpoint, vocabulary=vocabulary_json, threads=threads, model_name=model_name,
        sampling_weights=sampling_weights,
        image_size=image_size,
    )
    history, oof, val_keys = run_fold_job(job)
    write_csv(history.round(6), history_csv)
    write_csv(oof_table(val_keys, oof), oof_csv)


def oof_table(keys: pd.DataFrame, probs) -> pd.DataFrame:
    """``Id,p0..`` of the validation rows; a cell-crop cache's (``hpa.cells.crop_job``) keys also name each
    row's cell: ``Id,cell,p0..``."""
    return pd.concat([keys, probability_table(keys["Id"], probs).drop(columns="Id")], axis=1)


def train_fold_job(job: ClassifierJob, ranks: Ranks):
    """Read the cache, labels and folds of a train job and fit it; returns (history, OOF probs, OOF keys)."""
    cache, (train_rows, y_train), (val_rows, y_val, val_keys) = read_fold(job, ranks)
    fold = job.fold
    # A cache larger than the model's input (data.cache_size): train on random crops of it.
    size = job.image_size
    crop = size if size and size < cache.shape[-1] else None
    log.info("%s fold %d: %d training, %d validation images on %s (%d process%s)", job.model_name, fold,
             len(train_rows), len(val_rows), ranks.device, ranks.world, "es" if ranks.distributed else "")
    history, oof = fit_fold(
        job.cfg, cache, train_rows, y_train, val_rows, y_val, read_json(job.stats_json),
        vocabulary=Vocabulary.read(job.vocabulary),
        checkpoint_path=job.checkpoint,
        workers=loader_workers(job.threads // ranks.world),
        class_weights=read_class_weights(job.sampling_weights) if job.sampling_weights else None,
        extra={"name": job.model_name, "fold": fold, "image_size": int(cache.shape[-1]), "crop": crop},
        ranks=ranks,
        crop=crop,
    )
    return history, oof, val_keys

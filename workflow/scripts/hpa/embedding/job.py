"""The ``train_embedding`` and ``embed`` rules: one fold's embedding, and the embeddings of every image."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hpa.classes import Vocabulary
from hpa.config.spec import EmbeddingConfig
from hpa.data.cache import open_cache
from hpa.dihedral import TTA_TRANSFORMS
from hpa.embedding.fit import fit_embedding
from hpa.embedding.model import EmbeddingNet, load_embedder
from hpa.embedding.neighbours import write_embeddings
from hpa.files import read_json, write_csv
from hpa.inference.tta import view_outputs
from hpa.runtime.device import autocast_dtype, compute_threads
from hpa.runtime.distributed import Ranks
from hpa.runtime.job import FoldJob, read_fold, run_fold_job
from hpa.runtime.loader import CachedImages, loader_workers, make_loader, progress
from hpa.tables import matrix_to_labels

log = logging.getLogger(__name__)


def embed_rows(model: EmbeddingNet, cache: np.ndarray, rows, batch_size: int = 64, flips: bool = True,
               workers: int = 0, amp: torch.dtype | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of ``rows``; with ``flips``, the normalised mean over the four flips."""
    device = next(model.parameters()).device
    views = TTA_TRANSFORMS["flips"] if flips else (0,)
    loader = progress(make_loader(CachedImages(cache, rows), batch_size, workers=workers), desc="embed")
    out = [np.zeros((0, model.neck.num_features), dtype=np.float32)]
    for per_view in view_outputs(model, loader, device, views, amp=amp, finish=lambda e: F.normalize(e, dim=1)):
        out.append(F.normalize(per_view.sum(0), dim=1).cpu().numpy())
    return np.concatenate(out)


def run_training_job(*, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, vocabulary_json,
                     embedding: dict, fold: int, checkpoint, history_csv, threads: int = 1) -> None:
    """The ``train_embedding`` rule: one fold's embedding, trained on the other folds' images.

    With ``processes: N``, N ranks train it together (torchrun, as a classifier's job does).
    """
    job = FoldJob(train=train_embedding_job, cfg=EmbeddingConfig.from_dict(embedding), fold=fold,
                  cache_npy=cache_npy, cache_index=cache_index, stats_json=stats_json, folds_csv=folds_csv,
                  manifest_csv=manifest_csv, checkpoint=checkpoint, vocabulary=vocabulary_json, threads=threads)
    write_csv(run_fold_job(job).round(6), history_csv)


def train_embedding_job(job: FoldJob, ranks: Ranks) -> pd.DataFrame:
    """Read the cache, labels and folds of a train_embedding job and fit it (on this rank); return the history."""
    cache, (rows, y), _ = read_fold(job, ranks)
    log.info("embedding fold %d: %d training images on %s (%d process%s)", job.fold, len(rows), ranks.device,
             ranks.world, "es" if ranks.distributed else "")
    return fit_embedding(job.cfg, cache, rows, matrix_to_labels(y), read_json(job.stats_json),
                         vocabulary=Vocabulary.read(job.vocabulary), checkpoint_path=job.checkpoint,
                         workers=loader_workers(job.threads // ranks.world),
                         extra={"fold": job.fold, "image_size": int(cache.shape[-1])}, ranks=ranks)


def run_embed_job(*, checkpoint, train_npy, train_index, test_npy, test_index, embeddings,
                  batch_size: int, flips: bool, threads: int = 1) -> None:
    """The ``embed`` rule: one fold's embedding of every readable training and test image."""
    torch.set_num_threads(compute_threads(threads))
    model, ckpt = load_embedder(checkpoint)
    device = next(model.parameters()).device
    amp = autocast_dtype(device, ckpt["config"]["embedding"].get("amp"))
    workers, arrays = loader_workers(threads), {}
    for split, npy, index_csv in (("train", train_npy, train_index), ("test", test_npy, test_index)):
        cache, index = open_cache(npy, index_csv)
        ok = index[index["ok"]]
        rows = ok["row"].to_numpy()
        arrays[split] = (ok["Id"].to_numpy(), embed_rows(model, cache, rows, batch_size, flips, workers, amp))
        log.info("fold %s: embedded %d %s images", ckpt["config"].get("fold"), len(ok), split)
    write_embeddings(embeddings, *arrays["train"], *arrays["test"])

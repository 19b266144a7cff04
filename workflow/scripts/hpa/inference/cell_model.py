"""The ``predict_cell_model`` rule: a fold's cell-level model on every test cell, through the same TTA loop as
the image models (``hpa.inference.tta``), the mean over the views.

Output (npz): ``ids``, ``cells`` and ``probs`` (cells, classes) float32. The fold's out-of-fold cells, whose
pooled scores choose the blend weight (``hpa.cells.cell_model``), are its training job's validation pass.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from hpa.data.cache import open_cache
from hpa.files import atomic_path
from hpa.inference.tta import predict_views
from hpa.runtime.checkpoint import checkpoint_vocabulary, load_checkpoint
from hpa.runtime.device import autocast_dtype, compute_threads, pick_device
from hpa.runtime.loader import CachedImages, loader_workers, make_loader

log = logging.getLogger(__name__)


def run_job(*, checkpoint, test_npy, test_index, out_npz, views, batch_size: int, threads: int = 1) -> None:
    torch.set_num_threads(compute_threads(threads))
    device = pick_device()
    model, ckpt = load_checkpoint(checkpoint, device)
    n_classes = checkpoint_vocabulary(ckpt["config"]).n_classes
    amp = autocast_dtype(device, ckpt["config"]["model"].get("amp"))
    cache, index = open_cache(test_npy, test_index)
    table = index[index["ok"]]
    loader = make_loader(CachedImages(cache, table["row"]), batch_size, workers=loader_workers(threads))
    probs = predict_views(model, loader, device, views, amp, n_classes=n_classes).mean(0)
    with atomic_path(out_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=table["Id"].to_numpy(dtype=str), cells=table["cell"].to_numpy(dtype=np.int64), probs=probs)
    log.info("fold %d: %d test cells x %d views", ckpt["config"]["fold"], len(table), len(views))

"""The ``predict`` rule: a trained fold's probabilities on every view it is asked for.

A fold runs its model once, on the union of the dihedral views any ensemble needs, and
keeps each view's probabilities (``views.npz``). ``combine_views`` (``hpa.inference.combine``)
then makes the mean or max over an ensemble's views without running the model again: adding an
ensemble that takes the max where another takes the mean costs seconds, not a pass over the data.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from hpa.crops import crop_boxes
from hpa.data.cache import open_cache
from hpa.dihedral import transforms_for
from hpa.files import atomic_path
from hpa.inference.per_cell import CellOutputs, finer, write_cell_probabilities, write_maps
from hpa.inference.tta import predict_views
from hpa.runtime.checkpoint import checkpoint_vocabulary, load_checkpoint
from hpa.runtime.device import autocast_dtype, compute_threads, pick_device
from hpa.runtime.loader import CachedImages, loader_workers, make_loader

log = logging.getLogger(__name__)

def views_of(tta_names) -> list[int]:
    """The dihedral views (sorted) that TTA settings ``tta_names`` need between them."""
    return sorted(set().union(*(transforms_for(name) for name in tta_names)))


def run_job(
    *, checkpoint, train_npy, train_index, test_npy, test_index, folds_csv, views_npz,
    tta_names, batch_size: int, crops: str = "none", threads: int = 1, cells: CellOutputs | None = None,
) -> None:
    torch.set_num_threads(compute_threads(threads))
    device = pick_device()
    model, ckpt = load_checkpoint(checkpoint, device)
    fold = ckpt["config"]["fold"]
    amp = autocast_dtype(device, ckpt["config"]["model"].get("amp"))
    views = views_of(tta_names)
    crop = ckpt["config"].get("crop")  # a model trained on crops predicts on the crop grid

    cache, index = open_cache(train_npy, train_index)
    n_crops = len(crop_boxes(cache.shape[-1], crop, crops))
    folds = pd.read_csv(folds_csv, dtype={"Id": str})
    val = index[index["ok"]].merge(folds[folds["fold"] == fold], on="Id")
    test_cache, test_idx = open_cache(test_npy, test_index)
    test = test_idx[test_idx["ok"]]

    # Row k of each split's (C * V, images, classes) array is crop view_crop[k] seen through dihedral view_t[k].
    arrays = {"view_t": np.tile(views, n_crops), "view_crop": np.repeat(np.arange(n_crops), len(views))}
    for split, table, array in (("oof", val, cache), ("test", test, test_cache)):
        loader = make_loader(CachedImages(array, table["row"]), batch_size, workers=loader_workers(threads))
        n_classes = checkpoint_vocabulary(ckpt["config"]).n_classes
        arrays[split] = predict_views(model, loader, device, views, amp, n_classes=n_classes, crop=crop, grid=crops)
        arrays[f"{split}_ids"] = table["Id"].to_numpy(dtype=str)
        log.info("fold %d: %d %s images x %d crops x %d views", fold, len(table), split, n_crops, len(views))
    with atomic_path(views_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    if cells is not None:
        loader = make_loader(CachedImages(test_cache, test["row"]), batch_size, workers=loader_workers(threads))
        write_maps(finer(model, cells.dilate), loader, test["Id"].to_numpy(dtype=str), cells.views, cells.maps)
        log.info("fold %d: class maps of %d test images over views %s", fold, len(test), list(cells.views))
        n = write_cell_probabilities(model, test_cache, test, cells, batch_size=batch_size, amp=amp, device=device)
        log.info("fold %d: %d test cells, each alone in its field, over views %s", fold, n, list(cells.views))

"""The ``predict`` rule (a trained fold's probabilities on every view it is asked for) and ``combine_views``.

A fold runs its model once, on the union of the dihedral views any ensemble needs, and
keeps each view's probabilities (``views.npz``). ``combine_views`` then makes the mean
or max over an ensemble's views without running the model again: adding an ensemble
that takes the max where another takes the mean costs seconds, not a pass over the data.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from hpa.crops import crop_boxes
from hpa.data.cache import open_cache
from hpa.dihedral import transforms_for
from hpa.files import atomic_path, write_csv
from hpa.inference.tta import AGGREGATES, predict_views
from hpa.runtime.checkpoint import checkpoint_vocabulary, load_checkpoint
from hpa.runtime.device import autocast_dtype, pick_device
from hpa.runtime.loader import CachedImages, loader_workers, make_loader
from hpa.tables import probability_table

log = logging.getLogger(__name__)

SPLITS = ("oof", "test")


def views_of(tta_names) -> list[int]:
    """The dihedral views (sorted) that TTA settings ``tta_names`` need between them."""
    return sorted(set().union(*(transforms_for(name) for name in tta_names)))


def run_job(
    *, checkpoint, train_npy, train_index, test_npy, test_index, folds_csv, views_npz,
    tta_names, batch_size: int, crops: str = "none", threads: int = 1,
) -> None:
    torch.set_num_threads(max(1, threads))
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
        arrays[split] = predict_views(model, loader, device, views, amp, n_classes=checkpoint_vocabulary(ckpt["config"]).n_classes,
                                      crop=crop, grid=crops)
        arrays[f"{split}_ids"] = table["Id"].to_numpy(dtype=str)
        log.info("fold %d: %d %s images x %d crops x %d views", fold, len(table), split, n_crops, len(views))
    with atomic_path(views_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def combine_job(*, views_npz, tta: str, aggregate: str, oof_csv, test_csv) -> None:
    """The ``combine_views`` rule: one fold's probability tables for one TTA setting and aggregate."""
    saved = np.load(views_npz)
    have = sorted(set(saved["view_t"].tolist()))
    wanted = transforms_for(tta)
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise ValueError(f"{views_npz}: views {missing} of tta {tta!r} were not predicted (have {have}); "
                         f"rerun its predict job (snakemake -R predict)")
    # Every crop, each through the wanted views, in the order a direct TTA pass stacks them.
    key = list(zip(saved["view_crop"].tolist(), saved["view_t"].tolist()))
    rows = [key.index((c, t)) for c in sorted(set(saved["view_crop"].tolist())) for t in wanted]
    reduce = AGGREGATES[aggregate]
    for split, out in zip(SPLITS, (oof_csv, test_csv)):
        per_view = torch.from_numpy(saved[split][rows])
        write_csv(probability_table(saved[f"{split}_ids"], reduce(per_view).numpy()), out)

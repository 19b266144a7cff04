"""The ``predict`` rule: a trained fold's TTA probabilities on its OOF and the test images."""

from __future__ import annotations

import pandas as pd
import torch

from hpa.data.cache import open_cache
from hpa.files import write_csv
from hpa.inference.tta import predict_probs
from hpa.tables import probability_table
from hpa.training.checkpoint import load_checkpoint
from hpa.training.device import autocast_dtype, pick_device
from hpa.training.loader import CachedImages, loader_workers, make_loader


def run_job(
    *, checkpoint, train_npy, train_index, test_npy, test_index, folds_csv,
    oof_csv, test_csv, tta: str, aggregate: str, batch_size: int, threads: int = 1,
) -> None:
    torch.set_num_threads(max(1, threads))
    device = pick_device()
    model, ckpt = load_checkpoint(checkpoint, device)
    fold = ckpt["config"]["fold"]
    amp = autocast_dtype(device, ckpt["config"]["model"].get("amp"))

    cache, index = open_cache(train_npy, train_index)
    folds = pd.read_csv(folds_csv, dtype={"Id": str})
    val = index[index["ok"]].merge(folds[folds["fold"] == fold], on="Id")
    test_cache, test_idx = open_cache(test_npy, test_index)
    test = test_idx[test_idx["ok"]]

    for table, array, out in ((val, cache, oof_csv), (test, test_cache, test_csv)):
        loader = make_loader(CachedImages(array, table["row"]), batch_size, workers=loader_workers(threads))
        probs = predict_probs(model, loader, device, tta=tta, aggregate=aggregate, amp=amp)
        write_csv(probability_table(table["Id"], probs), out)

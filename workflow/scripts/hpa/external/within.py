"""Duplicates and leaks within a dataset's own images, for every source (Kaggle layout, sample sheet).

The external stages only compare the atlas's images with the source's; a test image copying a
training image of the source itself went unnoticed. Here every cached image (train and test) is
hashed per channel from the image cache (``results/cache/{split}.npy``, decoded once already), and
the exact near-duplicate search of ``hpa.external.dedup`` (pigeonhole or tiled scan, whichever is
cheaper) finds the pairs within ``max_distance`` on every channel:

- ``leaks``: a test image and a training image that are duplicates (its labels leak);
- ``duplicates``: every training image in a cluster of two or more, with the cluster, which
  ``make_folds`` keeps in one fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa.external.dedup import clusters, find_pairs, hash_plane

LEAK_COLUMNS = ["test_id", "train_id", "distance"]
DUPLICATE_COLUMNS = ["Id", "cluster", "cluster_size"]


def cache_codes(cache: np.ndarray, rows, kind: str) -> np.ndarray:
    """(len(rows), channels) uint64 hashes of the cached images ``rows`` (each channel's 8-bit plane)."""
    out = np.zeros((len(rows), cache.shape[1]), np.uint64)
    for k, row in enumerate(rows):
        for c in range(cache.shape[1]):
            out[k, c] = int(hash_plane(np.asarray(cache[row, c]), kind), 16)
    return out


def pair_tables(ids: np.ndarray, splits: np.ndarray, codes: np.ndarray, max_distance: int,
                workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(leaks, duplicates) among images ``ids`` of ``splits`` ("train"/"test") with hash ``codes``."""
    i, j = find_pairs(codes, max_distance, workers)
    distance = np.bitwise_count(codes[i] ^ codes[j]).max(axis=1) if len(i) else np.zeros(0, int)
    cross = splits[i] != splits[j]
    test_first = splits[i] == "test"
    leaks = pd.DataFrame({
        "test_id": np.where(test_first, ids[i], ids[j])[cross],
        "train_id": np.where(test_first, ids[j], ids[i])[cross],
        "distance": distance[cross].astype(int),
    }, columns=LEAK_COLUMNS)
    train = (splits[i] == "train") & (splits[j] == "train")
    n = len(ids)
    label = clusters(n, i[train], j[train])
    size = np.bincount(label, minlength=label.max() + 1 if n else 0)[label] if n else np.zeros(0, int)
    grouped = (size > 1) & (splits == "train")
    duplicates = pd.DataFrame({"Id": ids[grouped], "cluster": label[grouped], "cluster_size": size[grouped]},
                              columns=DUPLICATE_COLUMNS).sort_values(["cluster", "Id"], ignore_index=True)
    return leaks.sort_values(LEAK_COLUMNS[:2], ignore_index=True), duplicates

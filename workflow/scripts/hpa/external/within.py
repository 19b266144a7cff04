"""Duplicates and leaks within a dataset's own images, for every source (Kaggle layout, sample sheet).

The external stages only compare the atlas's images with the source's; a test image copying a
training image of the source itself went unnoticed. When the external stage is on, ``hash_images``
has already hashed every source image per channel (``results/external/source_hashes.csv``), and
``source_codes`` reuses those hashes (the search alone then costs seconds). Otherwise every cached
image (train and test) is hashed per channel from the image cache (``results/cache/{split}.npy``, decoded once already) by a
vectorised pHash (``batch_phash``: area mean to 32 x 32, DCT, the 8 x 8 low frequencies against their
median; imagehash's resampling per plane costs 57 ms an image at 512 px, too slow for 100k), and
the exact near-duplicate search of ``hpa.external.dedup`` (pigeonhole or tiled scan, whichever is
cheaper) finds the pairs within ``max_distance`` on every channel:

- ``leaks``: a test image and a training image that are duplicates (its labels leak);
- ``duplicates``: every training image in a cluster of two or more, with the cluster, which
  ``make_folds`` keeps in one fold.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.fft import dctn

from hpa.external.dedup import clusters, find_pairs, to_codes

log = logging.getLogger(__name__)

LEAK_COLUMNS = ["test_id", "train_id", "distance"]
DUPLICATE_COLUMNS = ["Id", "cluster", "cluster_size"]


def batch_phash(planes: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (uint64) of ``planes`` (n, H, W) uint8, all at once."""
    n, h, w = planes.shape
    up = -(-32 // min(h, w))  # a cache under 32 px: repeat pixels up to 32 first
    if up > 1:
        planes = planes.repeat(up, axis=1).repeat(up, axis=2)
        h, w = h * up, w * up
    h, w = h // 32 * 32, w // 32 * 32
    small = planes[:, :h, :w].reshape(n, 32, h // 32, 32, w // 32).mean(axis=(2, 4), dtype=np.float32)
    low = dctn(small, type=2, axes=(1, 2))[:, :8, :8].reshape(n, 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel().astype(np.uint64)


def cache_codes(cache: np.ndarray, rows, batch: int = 256, workers: int = 1) -> np.ndarray:
    """(len(rows), channels) uint64 hashes of the cached images ``rows``, each channel's plane hashed;
    ``workers`` threads take a batch each (numpy's reductions release the GIL)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), cache.shape[1]), np.uint64)

    def fill(start):
        part = rows[start:start + batch]
        # A run of rows (the usual case: the index's rows in order) is a view of the memory map, not a copy.
        run = part[-1] - part[0] == len(part) - 1 and (np.diff(part) == 1).all()
        images = cache[part[0]:part[-1] + 1] if run else cache[part]
        for c in range(cache.shape[1]):
            out[start:start + len(part), c] = batch_phash(images[:, c])

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(fill, range(0, len(rows), batch)))
    return out


def _hashed(ok: pd.DataFrame, hashes: pd.DataFrame, split: str) -> pd.DataFrame:
    """The kept images ``ok`` of ``split`` with their row of ``hashes``, those hashed without error."""
    source = ok["Id"].isin(hashes["Id"])
    if not source.all():  # the external images ingest merged: clean_external compared them already
        log.info("%d cached %s images are external, not the source's; clean_external searched them",
                 (~source).sum(), split)
    hashed = hashes[hashes["split"].eq(split) & hashes["error"].eq("")].drop_duplicates("Id")
    out = ok.loc[source, ["Id"]].merge(hashed, on="Id", how="inner", validate="one_to_one")
    if len(out) < source.sum():  # hash_images could not read them; clean_external stops when too many
        log.warning("%d of %d cached %s source images have no hash in the source hashes; they are not searched",
                    source.sum() - len(out), source.sum(), split)
    return out


def source_codes(indexes: dict, caches: dict, hashes: pd.DataFrame | None = None, kind: str = "phash",
                 channels=("red", "green", "blue"), workers: int = 1):
    """(ids, splits, codes) of the images each split's cache index (``indexes``, split -> table) kept.

    With ``hashes`` (hash_images's table: ``Id,split,error`` and ``{kind}_{channel}`` hex columns)
    the codes are those hashes over ``channels``, for the kept Ids hashed without error, and
    ``caches`` is never read; without, each kept image of ``caches[split]`` is hashed here.
    """
    ids, splits, codes = [], [], []
    for split, index in indexes.items():
        ok = index[index["ok"].astype(bool)]
        if hashes is not None:
            ok = _hashed(ok, hashes, split)
            split_codes = to_codes(ok, kind, channels)
        else:
            split_codes = cache_codes(caches[split], ok["row"].to_numpy(), workers=workers)
        ids += ok["Id"].tolist()
        splits += [split] * len(ok)
        codes.append(split_codes)
    width = len(channels) if hashes is not None else 0
    codes = np.concatenate(codes) if codes else np.zeros((0, width), np.uint64)
    return np.array(ids, dtype=object), np.array(splits), codes


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

"""Decoding the four channel images, and the uint8 image cache training reads.

The cache is one ``.npy`` array of shape (n, 4, size, size) per split, opened
memory-mapped, plus an index CSV (``Id,row,ok``). Decoding PNGs costs
milliseconds per image (a full-size 16-bit TIFF, far more); training reads each image dozens of times, so it is
decoded exactly once, here. Worker processes write their rows straight into
the memory-mapped file, so no pixel crosses a pipe.
"""

from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np
import pandas as pd

from hpa.classes import CHANNELS
from hpa.data.images import BitDepth, load_image
from hpa.files import atomic_path, write_csv, write_json

log = logging.getLogger(__name__)

_worker_cache: np.ndarray | None = None


def _open_worker(path: str) -> None:
    global _worker_cache
    _worker_cache = np.load(path, mmap_mode="r+")


def _fill_row(task) -> tuple[int, str]:
    row, image_dir, image_id, size, depth = task
    try:
        _worker_cache[row] = load_image(image_dir, image_id, size, depth)
    except Exception as err:  # one broken image must not stop 100k others
        return row, f"{type(err).__name__}: {err}"
    return row, ""


def build_cache(table: pd.DataFrame, npy_path, index_path, size: int, workers: int = 1,
                depth: BitDepth = BitDepth()) -> pd.DataFrame:
    """Decode every image of ``table`` (manifest rows) into ``npy_path``, 16-bit ones by ``depth``.

    Images that fail to decode keep an all-zero slot and ``ok=False`` in the
    index, with the reason; downstream stages skip them.
    """
    n = len(table)
    index = pd.DataFrame({"Id": table["Id"].to_numpy(), "row": np.arange(n), "ok": True, "error": ""})
    with atomic_path(npy_path, suffix=".npy") as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 4, size, size)).flush()
        tasks = [(i, d, id_, size, depth) for i, (d, id_) in enumerate(zip(table["image_dir"], table["Id"]))]
        if workers > 1 and n > 1:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=_open_worker, initargs=(str(tmp),)) as pool:
                results = list(pool.imap_unordered(_fill_row, tasks, chunksize=16))
        else:
            _open_worker(str(tmp))
            results = [_fill_row(t) for t in tasks]
        for row, error in results:
            if error:
                log.warning("could not decode %s: %s", index.at[row, "Id"], error)
                index.loc[row, ["ok", "error"]] = [False, error]
    write_csv(index, index_path)
    return index


def channel_stats(cache: np.ndarray, rows, max_images: int = 2000, seed: int = 0) -> dict:
    """Per-channel mean and std (on the 0..1 scale) over a sample of images."""
    rows = np.asarray(rows)
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
    total = np.zeros(4)
    total_sq = np.zeros(4)
    count = 0
    for start in range(0, len(rows), 256):
        block = cache[rows[start : start + 256]].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block**2).sum(axis=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 1e-12))
    return {"channels": list(CHANNELS), "mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


def open_cache(npy_path, index_path) -> tuple[np.ndarray, pd.DataFrame]:
    """The memory-mapped cache and its index (only the rows that decoded)."""
    index = pd.read_csv(index_path, dtype={"Id": str}, keep_default_na=False)
    return np.load(npy_path, mmap_mode="r"), index


def write_stats(cache_path, index: pd.DataFrame, stats_path) -> None:
    cache = np.load(cache_path, mmap_mode="r")
    write_json(channel_stats(cache, index.loc[index["ok"], "row"]), stats_path)

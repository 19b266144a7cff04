"""Decoding the channel images, and the uint8 image cache training reads.

The cache is one ``.npy`` array of shape (n, C, size, size) per split (C channels, in the
vocabulary's order), opened memory-mapped, plus an index CSV (``Id,row,ok,error,width,height,fit,clipped``:
each image's size as read and how it was made square, ``fit`` = ``square`` for a square field
that was only resized, and the channels the bit-depth rule clipped, ``hpa.data.clipping``). Decoding PNGs costs
milliseconds per image (a full-size 16-bit TIFF, far more); training reads each image dozens of times, so it is
decoded exactly once, here. Worker processes write their rows straight into
the memory-mapped file, so no pixel crosses a pipe.
"""

from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np
import pandas as pd

from hpa.data.clipping import Clipping, note
from hpa.data.clipping import table as clipped_table
from hpa.data.images import BitDepth, decode_field
from hpa.data.ingest import manifest_files
from hpa.files import atomic_path, write_csv, write_json

log = logging.getLogger(__name__)

_worker_cache: np.ndarray | None = None


def _open_worker(path: str) -> None:
    global _worker_cache
    _worker_cache = np.load(path, mmap_mode="r+")


def _fill_row(task) -> tuple[int, str, int, int, dict]:
    row, record, channels, files_of, size, depth, fit = task
    shares: dict = {}
    try:
        _worker_cache[row], (width, height) = decode_field(files_of(record, channels), size, depth, fit=fit,
                                                           shares=shares)
    except Exception as err:  # one broken image must not stop 100k others
        return row, f"{type(err).__name__}: {err}", 0, 0, {}
    return row, "", width, height, shares


def build_cache(table: pd.DataFrame, npy_path, index_path, size: int, channels, workers: int = 1,
                depth=BitDepth(), fit: str = "pad", files_of=manifest_files, clipping: Clipping = Clipping(),
                clipped_path=None) -> pd.DataFrame:
    """Decode every image of ``table`` (manifest rows) into ``npy_path``, 16-bit ones by ``depth``.

    ``channels``: the vocabulary's channel names, the cache's channel order; ``files_of(row, channels)``
    gives a row's {channel: file} (``manifest_files``: the manifest's ``file_{channel}`` columns, else
    the Kaggle layout); ``depth``: one rule or {channel: rule} (``hpa.data.bit_depth.depths``);
    ``fit``: how a non-square field becomes square.
    Images that fail to decode keep an all-zero slot and ``ok=False`` in the
    index, with the reason; downstream stages skip them. Channels the bit-depth rule clips
    (``clipping``, ``hpa.data.clipping``) are listed in ``clipped_path`` and the index's ``clipped``.
    """
    n, channels = len(table), tuple(channels)
    index = pd.DataFrame({"Id": table["Id"].to_numpy(), "row": np.arange(n), "ok": True, "error": "",
                          "width": 0, "height": 0, "fit": "", "clipped": ""})
    clipped = []
    with atomic_path(npy_path, suffix=".npy") as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, len(channels), size, size)).flush()
        tasks = [(i, record, channels, files_of, size, depth, fit)
                 for i, record in enumerate(table.to_dict("records"))]
        if workers > 1 and n > 1:
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=_open_worker, initargs=(str(tmp),)) as pool:
                results = list(pool.imap_unordered(_fill_row, tasks, chunksize=16))
        else:
            _open_worker(str(tmp))
            results = [_fill_row(t) for t in tasks]
        # Gathered in lists and set as whole columns: a .loc write per row into this mixed-type table
        # costs a copy of it, which made 100k images quadratic (171 s at the real size, 29 s without).
        columns = {k: index[k].to_list() for k in ("ok", "error", "width", "height", "fit", "clipped")}
        for row, error, width, height, shares in results:
            clipped += (rows := clipping.rows(index.at[row, "Id"], shares))
            columns["clipped"][row] = note(rows)
            if error:
                log.warning("could not decode %s: %s", index.at[row, "Id"], error)
                columns["ok"][row], columns["error"][row] = False, error
            else:
                columns["width"][row], columns["height"][row] = width, height
                columns["fit"][row] = "square" if width == height else fit
        index = index.assign(**columns)
    reshaped = index[index["fit"].isin(["pad", "crop", "stretch"])]
    if len(reshaped):
        log.info("%d of %d images are not square: made square by data.fit=%s", len(reshaped), n, fit)
    if clipped_path is not None:
        write_csv(clipped_table(clipped), clipped_path)
    write_csv(index, index_path)
    return index


def channel_stats(cache: np.ndarray, rows, channels, max_images: int = 2000, seed: int = 0) -> dict:
    """Per-channel mean and std (on the 0..1 scale) over a sample of images; ``channels`` names the cache's."""
    channels = list(channels)
    if cache.shape[1] != len(channels):
        raise ValueError(f"the cache holds {cache.shape[1]} channels, the vocabulary names {len(channels)} "
                         f"({channels}): rebuild the cache (cache_images) for this vocabulary")
    rows = np.asarray(rows)
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_images, replace=False))
    total = np.zeros(len(channels))
    total_sq = np.zeros(len(channels))
    count = 0
    for start in range(0, len(rows), 256):
        block = cache[rows[start : start + 256]].astype(np.float64) / 255.0
        total += block.sum(axis=(0, 2, 3))
        total_sq += (block**2).sum(axis=(0, 2, 3))
        count += block.shape[0] * block.shape[2] * block.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 1e-12))
    return {"channels": channels, "mean": mean.round(6).tolist(), "std": std.round(6).tolist()}


def open_cache(npy_path, index_path) -> tuple[np.ndarray, pd.DataFrame]:
    """The memory-mapped cache and its index (only the rows that decoded)."""
    index = pd.read_csv(index_path, dtype={"Id": str}, keep_default_na=False)
    return np.load(npy_path, mmap_mode="r"), index


def write_stats(cache_path, index: pd.DataFrame, stats_path, channels) -> None:
    cache = np.load(cache_path, mmap_mode="r")
    write_json(channel_stats(cache, index.loc[index["ok"], "row"], channels), stats_path)

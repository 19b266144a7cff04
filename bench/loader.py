"""The training loader's throughput at 512 px from an on-disk cache, against a plain read of the same rows.

Both read the same shuffled, oversampled epoch (``EpochBatches``) from one memory-mapped
uint8 cache file: the plain read indexes the memmap batch by batch in the main process
(the floor: a copy of each batch's rows out of the page cache), the loader runs
``CachedImages.__getitems__`` (one sorted read per batch) with no workers and with the
workers a GPU job would use. Target: the loader at least as fast as the plain read, so that
what is left between the cache and the GPU is the transfer.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hpa.labels.sampling import image_weights
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import CachedImages, training_loader

from .common import report

SIZE = int(os.environ.get("BENCH_LOADER_SIZE", 512))
IMAGES = int(os.environ.get("BENCH_LOADER_IMAGES", 1024))
BATCH = 32


def write_cache(path: Path) -> np.ndarray:
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(IMAGES, 4, SIZE, SIZE))
    rng = np.random.default_rng(0)
    for start in range(0, IMAGES, 64):  # in slices: a 1 GiB random array at once would double the memory
        cache[start:start + 64] = rng.integers(0, 256, size=cache[start:start + 64].shape, dtype=np.uint8)
    cache.flush()
    return np.load(path, mmap_mode="r")


def images_per_s(batches) -> float:
    start, seen = time.perf_counter(), 0
    for x, _ in batches:
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> dict:
    y = (np.random.default_rng(1).random((IMAGES, 28)) < 0.1).astype(np.float32)
    weights = image_weights(y, np.ones(28))
    with tempfile.TemporaryDirectory() as tmp:
        cache = write_cache(Path(tmp) / "cache.npy")
        data = CachedImages(cache, np.arange(IMAGES), y)
        loaders = {w: training_loader(data, BATCH, Ranks(), weights=weights, seed_of=lambda e: e, workers=w)
                   for w in (0, 2)}
        loaders[0].batch_sampler.set_epoch(0)
        order = list(loaders[0].batch_sampler)
        plain = lambda: ((torch.from_numpy(np.asarray(cache[batch])), y[batch]) for batch in order)  # noqa: E731
        images_per_s(plain())  # warm the page cache: every figure below reads from memory
        figures = {"plain_read": images_per_s(plain())}
        for workers, loader in loaders.items():
            loader.batch_sampler.set_epoch(0)
            images_per_s(loader)  # starts the (persistent) workers
            figures[f"loader_{workers}_workers"] = images_per_s(loader)
    rounded = {k: round(v, 1) for k, v in figures.items()}
    return report("loader", {
        "size": SIZE, "images": IMAGES, "batch_size": BATCH, "images_per_s": rounded,
        "ratio_loader_0_workers_to_plain": round(figures["loader_0_workers"] / figures["plain_read"], 3),
        "ratio_loader_2_workers_to_plain": round(figures["loader_2_workers"] / figures["plain_read"], 3),
        "target_min_ratio": 1.0,
    })


if __name__ == "__main__":
    main()

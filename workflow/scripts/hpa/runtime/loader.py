"""Feeding the model from the memory-mapped uint8 cache: the dataset, the epoch sampler, the loaders.

At the real size the cache is ~105 GB. Nothing of it may travel to a loader worker:
``CachedImages`` pickles as the cache file's name and layout and opens the file again in
the process that reads it, whatever the start method (fork, spawn, forkserver). One
training loader lives for all epochs of a fold (its workers persist); ``EpochBatches``
draws each epoch's batches from that epoch's own seed, so a resumed run sees the same
batches as an uninterrupted one. A batch's rows are read in ascending order.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hpa.runtime import distributed
from hpa.runtime.device import pick_device
from hpa.runtime.distributed import Ranks


def memmap_source(array: np.ndarray) -> dict | None:
    """How to reopen ``array`` if it maps a whole file (as ``np.load(mmap_mode='r')`` gives); else None."""
    if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename):
        return None
    return {"filename": array.filename, "dtype": array.dtype.str, "shape": array.shape, "offset": array.offset,
            "order": "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"}


class CachedImages(Dataset):
    """Rows of the uint8 cache (n, C, size, size), with their label vectors; opened lazily per process."""

    def __init__(self, cache: np.ndarray, rows, targets: np.ndarray | None = None):
        self.rows = np.asarray(rows)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)
        self._cache, self.source = cache, memmap_source(cache)

    @property
    def cache(self) -> np.ndarray:
        if self._cache is None:
            self._cache = np.memmap(mode="r", **self.source)
        return self._cache

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.source is not None:
            state["_cache"] = None  # reopened where it is read
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self.cache[self.rows[i]]))
        return x if self.targets is None else (x, self.targets[i])

    def __getitems__(self, positions: list[int]):
        """A whole batch from one read of its rows in ascending order (the DataLoader's batched fetch)."""
        positions = np.asarray(positions)
        rows, cache = self.rows[positions], self.cache
        out = np.empty((len(rows), *cache.shape[1:]), dtype=cache.dtype)
        # Row by row in ascending order, each straight into its slot: one copy per image (a fancy
        # index and a scatter would be two), and the file is read forward when it is not in memory.
        for j in np.argsort(rows, kind="stable"):
            out[j] = cache[rows[j]]
        x = torch.from_numpy(out)
        return x if self.targets is None else (x, self.targets[positions])


def collate_batch(batch):
    """``CachedImages.__getitems__`` already returns the batch; nothing is left to stack."""
    return batch


class EpochBatches(torch.utils.data.Sampler):
    """This rank's share of each epoch's global batches; ``set_epoch`` draws them from that epoch's seed.

    Shuffled, or drawn with replacement by ``weights`` (oversampling); the remainder
    is dropped, since a last batch of one image breaks BatchNorm.
    """

    def __init__(self, n: int, batch_size: int, ranks: Ranks, weights=None, seed_of=lambda epoch: epoch):
        self.n, self.batch_size, self.ranks, self.weights, self.seed_of = n, batch_size, ranks, weights, seed_of
        self.batches: list[np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.seed_of(epoch))
        self.batches = distributed.epoch_batches(self.n, self.batch_size, generator, self.weights)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.n > self.batch_size else 1

    def __iter__(self):
        if self.batches is None:
            raise RuntimeError("EpochBatches: call set_epoch(epoch) before each epoch")
        yield from distributed.RankBatches(self.batches, self.ranks)


def _loader(dataset, *, workers: int, cuda: bool, **kwargs) -> DataLoader:
    return DataLoader(
        dataset,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        collate_fn=collate_batch if isinstance(dataset, CachedImages) else None,
        **kwargs,
    )


def make_loader(dataset, batch_size: int, *, workers: int = 0) -> DataLoader:
    """Batches in order (evaluation, inference); training uses ``training_loader``."""
    return _loader(dataset, batch_size=batch_size, workers=workers, cuda=pick_device().type == "cuda")


def training_loader(dataset: CachedImages, batch_size: int, ranks: Ranks, *, weights=None, seed_of,
                    workers: int = 0) -> DataLoader:
    """One fold's training loader for all its epochs: call ``loader.batch_sampler.set_epoch`` before each."""
    sampler = EpochBatches(len(dataset), batch_size, ranks, weights, seed_of)
    return _loader(dataset, batch_sampler=sampler, workers=workers, cuda=ranks.device.type == "cuda")


def loader_workers(threads: int) -> int:
    """DataLoader processes: on a GPU they keep it fed; on a CPU they would steal the model's cores."""
    return max(0, threads - 1) if pick_device().type == "cuda" else 0


def progress(iterable, **kwargs):
    """A progress bar on a terminal; nothing in a log file, where epoch lines say it all."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True, **kwargs)

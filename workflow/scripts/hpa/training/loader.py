"""Feeding the model from the memory-mapped uint8 cache: the dataset and its loaders."""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hpa.labels import sampling
from hpa.training import distributed
from hpa.training.config import TrainConfig
from hpa.training.device import pick_device
from hpa.training.distributed import Ranks


class CachedImages(Dataset):
    """Rows of the memory-mapped uint8 cache, with their label vectors."""

    def __init__(self, cache: np.ndarray, rows, targets: np.ndarray | None = None):
        self.cache, self.rows = cache, np.asarray(rows)
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        x = torch.from_numpy(np.array(self.cache[self.rows[i]]))
        return x if self.targets is None else (x, self.targets[i])


def make_loader(dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0, workers: int = 0) -> DataLoader:
    """Batches in order (evaluation, inference) or shuffled; training uses ``training_loader``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        # A last training batch of one image breaks BatchNorm; dropping the
        # remainder costs under one batch per epoch.
        drop_last=shuffle and len(dataset) > batch_size,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        num_workers=workers,
        pin_memory=pick_device().type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def training_loader(dataset: CachedImages, cfg: TrainConfig, seed: int, ranks: Ranks, *,
                    class_weights=None, workers: int = 0) -> DataLoader:
    """This rank's share of one epoch: shuffled, or oversampled by each image's rarest class."""
    weights = None
    if cfg.oversample:
        weights = sampling.image_weights(dataset.targets.numpy(), class_weights)
    batches = distributed.epoch_batches(len(dataset), cfg.batch_size, torch.Generator().manual_seed(seed), weights)
    return DataLoader(
        dataset,
        batch_sampler=distributed.RankBatches(batches, ranks),
        num_workers=workers,
        pin_memory=ranks.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def loader_workers(threads: int) -> int:
    """DataLoader processes: on a GPU they keep it fed; on a CPU they would steal the model's cores."""
    return max(0, threads - 1) if pick_device().type == "cuda" else 0



def progress(iterable, **kwargs):
    """A progress bar on a terminal; nothing in a log file, where epoch lines say it all."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True, **kwargs)

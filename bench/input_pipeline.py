"""Input pipeline: time spent waiting for data as a fraction of the training step.

Measured inside ``train_one_epoch`` (time blocked on the DataLoader's next
batch over the epoch's wall time), at the demo size and at 512 px, with the
DataLoader workers the train rule would use for the profile's threads.
Target: <= 10%.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from hpa.classes import HPA
from hpa.config.spec import TrainConfig
from hpa.loop.trainer import train_one_epoch
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import CachedImages, loader_workers, training_loader
from hpa.training.classifier import classifier_trainer

from .common import report

THREADS = int(os.environ.get("BENCH_THREADS", 4))  # the train rule's threads in profiles/default


def measure(size: int, n: int, batch: int, workers: int) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        # A real memory-mapped cache on disk, as training reads it.
        path = Path(tmp) / "cache.npy"
        cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 4, size, size))
        cache[:] = rng.integers(0, 256, size=cache.shape, dtype=np.uint8)
        cache.flush()
        cache = np.load(path, mmap_mode="r")
        y = (rng.random((n, 28)) < 0.1).astype(np.float32)
        cfg = TrainConfig(arch="resnet18", batch_size=batch)
        trainer = classifier_trainer(cfg, {"mean": [0.1] * 4, "std": [0.2] * 4}, y, n // batch, vocabulary=HPA)
        loader = training_loader(CachedImages(cache, np.arange(n), y), batch, Ranks(), seed_of=lambda e: e,
                                 workers=workers)
        loader.batch_sampler.set_epoch(0)
        out = train_one_epoch(trainer, loader, torch.Generator().manual_seed(0))
    return {"size": size, "images": n, "batch_size": batch, "workers": workers,
            "images_per_s": round(out["images_per_s"], 2), "data_wait_fraction": round(out["data_wait_fraction"], 4)}


def main() -> dict:
    torch.set_num_threads(max(1, THREADS - loader_workers(THREADS)))
    workers = loader_workers(THREADS)
    demo = measure(64, 256, 32, workers)
    full = measure(512, int(os.environ.get("BENCH_INPUT_512_IMAGES", 32)), 8, workers)
    return report("input_pipeline", {
        "threads": THREADS, "demo_size": demo, "size_512": full,
        "max_data_wait_fraction": max(demo["data_wait_fraction"], full["data_wait_fraction"]),
        "target_max_fraction": 0.10,
    })


if __name__ == "__main__":
    main()

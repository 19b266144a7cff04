"""Training throughput: ``train_one_epoch`` against a bare forward/backward loop.

Same model, batch size and images; the bare loop has the batches already in
memory and does nothing but zero_grad / forward / loss / backward / step, so
the ratio is the cost of everything else (loading from the memory-mapped
cache, augmentation, bookkeeping). Target: >= 0.9.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from hpa.classes import HPA
from hpa.config.spec import TrainConfig
from hpa.loop.trainer import Trainer, train_one_epoch
from hpa.runtime.device import pick_device
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import CachedImages, training_loader
from hpa.training.classifier import classifier_trainer

from .common import report

SIZE = int(os.environ.get("BENCH_TRAIN_SIZE", 128))
BATCH = 32
BATCHES = int(os.environ.get("BENCH_TRAIN_BATCHES", 12))


def bare_loop(trainer: Trainer, batches) -> float:
    model, opt, loss_fn = trainer.model, trainer.optimizer, trainer.task.loss_fn
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x.float()), y).backward()
        opt.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return len(batches) * BATCH / (time.perf_counter() - start)


def main() -> dict:
    torch.manual_seed(0)
    n = BATCH * BATCHES
    rng = np.random.default_rng(0)
    cache = rng.integers(0, 256, size=(n, 4, SIZE, SIZE), dtype=np.uint8)
    y = (rng.random((n, 28)) < 0.1).astype(np.float32)
    stats = {"mean": [0.1] * 4, "std": [0.2] * 4}
    cfg = TrainConfig(arch="resnet18", batch_size=BATCH, augment={"dihedral": True})
    trainer = classifier_trainer(cfg, stats, y, BATCHES, vocabulary=HPA)
    device = pick_device()
    batches = [(torch.from_numpy(cache[i : i + BATCH]).to(device), torch.from_numpy(y[i : i + BATCH]).to(device))
               for i in range(0, n, BATCH)]
    bare_loop(trainer, batches[:2])  # warm-up: allocator, kernels
    bare = bare_loop(trainer, batches)
    loader = training_loader(CachedImages(cache, np.arange(n), y), BATCH, Ranks(), seed_of=lambda e: e)
    loader.batch_sampler.set_epoch(0)
    epoch = train_one_epoch(trainer, loader, torch.Generator().manual_seed(0))
    return report("train_step", {
        "arch": cfg.arch, "size": SIZE, "batch_size": BATCH, "batches": BATCHES, "device": device.type,
        "bare_images_per_s": round(bare, 2), "train_one_epoch_images_per_s": round(epoch["images_per_s"], 2),
        "ratio": round(epoch["images_per_s"] / bare, 3), "target_ratio": 0.9,
        "data_wait_fraction": round(epoch["data_wait_fraction"], 4),
    })


if __name__ == "__main__":
    main()

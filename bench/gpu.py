"""GPU throughput of the real recipe: training and 8-view TTA inference from an on-disk uint8 cache.

    python -m bench gpu [--archs resnet34,densenet121] [--size 512] [--steps 200] [--compile off,on]

For each architecture and compile setting: the model as ``config/hpa.yaml``
trains it (bf16 autocast, channels_last, its loss, batch size and augmentation;
random weights, since the weights do not change the speed), fed through the
real loader (``hpa.runtime.loader``) from a memory-mapped uint8 cache written
to disk here, timed by ``train_one_epoch``: images/s and the fraction of the
epoch spent waiting for data. One warm-up epoch first (cuDNN autotuning,
compilation, loader workers starting), then the measured one over the same
loader. Then inference: ``hpa.inference.tta.predict_probs`` with the 8 dihedral
views, batches of ``predict.batch_size``, the same loader workers. Peak GPU
memory per setting. Targets on one H100/H200-class GPU: ResNet34 at 512 px
trains at >= 2,000 images/s with data wait under 5%; the defaults are sized to
finish within 8 minutes there (not yet measured on one).

Runs on a CPU too (``--size 32 --steps 2 --batch 4``), which is how it is tested.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from hpa.classes import HPA
from hpa.inference.tta import predict_probs
from hpa.labels.sampling import image_weights
from hpa.loop.trainer import train_one_epoch
from hpa.runtime import distributed
from hpa.runtime.device import pick_device
from hpa.runtime.loader import CachedImages, loader_workers, make_loader, training_loader
from hpa.training.classifier import classifier_trainer
from hpa.training.config import TrainConfig

from .common import report

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config/hpa.yaml").read_text())
MODELS, PREDICT_BATCH = CONFIG["models"], CONFIG["predict"]["batch_size"]
TARGET_IMAGES_PER_S = {"resnet34": 2000}  # at 512 px, bf16, channels_last, one H100/H200-class GPU
TARGET_DATA_WAIT = 0.05
STATS = {"mean": [0.08, 0.05, 0.05, 0.08], "std": [0.12, 0.08, 0.1, 0.12]}


def write_cache(folder: Path, n: int, size: int, seed: int = 0) -> np.ndarray:
    """An (n, 4, size, size) uint8 cache of random pixels on disk, opened memory-mapped as training opens it."""
    path = folder / "train.npy"
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 4, size, size))
    rng = np.random.default_rng(seed)
    for start in range(0, n, 64):
        block = cache[start : start + 64]
        block[:] = rng.integers(0, 256, size=block.shape, dtype=np.uint8)
    cache.flush()
    del cache
    return np.load(path, mmap_mode="r")


def recipe(arch: str, batch: int | None, compiled: bool) -> TrainConfig:
    """config/hpa.yaml's model of this architecture (ResNet34's settings for any other), untrained weights."""
    entry = next((m for m in MODELS.values() if m["arch"] == arch), MODELS["resnet34"])
    overrides = {"arch": arch, "pretrained": None, "compile": compiled}
    if batch:
        overrides |= {"batch_size": batch, "accumulate": 1}
    return TrainConfig.from_dict(entry | overrides)


def real_loader(cache: np.ndarray, rows: np.ndarray, y: np.ndarray, cfg: TrainConfig, device: torch.device,
                workers: int):
    """The training loader the pipeline builds for a fold (the only call into the loader's API): oversampled
    as the recipe is, its workers kept across the warm-up and the measured epoch."""
    weights = image_weights(y, np.ones(y.shape[1])) if cfg.oversample else None
    return training_loader(CachedImages(cache, rows, y), cfg.batch_size, distributed.single(device), weights=weights,
                           seed_of=lambda epoch: epoch, workers=workers)


def peak_memory_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def measure(cache, arch: str, compiled: bool, args, device: torch.device) -> dict:
    """Training images/s and data wait, then TTA inference images/s, for one model and compile setting."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = recipe(arch, args.batch, compiled)
    n = args.steps * cfg.batch_size
    rows = np.resize(np.arange(len(cache)), n)  # an epoch of n draws re-reads the cache's rows
    y = (np.random.default_rng(0).random((n, 28)) < 0.1).astype(np.float32)
    trainer = classifier_trainer(cfg, STATS, y, args.steps, distributed.single(device), vocabulary=HPA)
    trainer.start_epoch(cfg.freeze_epochs + 1)  # the whole network trains, as after the frozen epochs
    loader = real_loader(cache, rows, y, cfg, device, args.workers)
    start = time.perf_counter()
    loader.batch_sampler.set_epoch(0)
    train_one_epoch(trainer, loader, torch.Generator().manual_seed(0))  # warm-up
    warmup = time.perf_counter() - start
    loader.batch_sampler.set_epoch(1)
    epoch = train_one_epoch(trainer, loader, torch.Generator().manual_seed(1))
    tta_rows = np.resize(np.arange(len(cache)), args.tta_images)
    tta_loader = make_loader(CachedImages(cache, tta_rows), PREDICT_BATCH, workers=args.workers)
    predict_probs(trainer.model, [next(iter(tta_loader))], device, tta="dihedral", amp=trainer.amp_dtype,
                  n_classes=y.shape[1])
    start = time.perf_counter()
    predict_probs(trainer.model, tta_loader, device, tta="dihedral", amp=trainer.amp_dtype,
                  n_classes=y.shape[1])
    tta_seconds = time.perf_counter() - start
    target = TARGET_IMAGES_PER_S.get(arch) if device.type == "cuda" and args.size == 512 else None
    return {
        "arch": arch, "compile": compiled, "batch_size": cfg.batch_size, "amp": str(trainer.amp_dtype),
        "channels_last": trainer.memory_format == torch.channels_last, "warmup_seconds": round(warmup, 1),
        "train_images_per_s": round(epoch["images_per_s"], 1),
        "data_wait_fraction": round(epoch["data_wait_fraction"], 4),
        "tta_views": 8, "tta_images_per_s": round(args.tta_images / tta_seconds, 1),
        "peak_gpu_memory_gb": peak_memory_gb(device),
        "target_images_per_s": target,
        "holds": None if target is None else bool(epoch["images_per_s"] >= target
                                                  and epoch["data_wait_fraction"] < TARGET_DATA_WAIT),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="resnet34,densenet121", help="comma-separated architectures")
    parser.add_argument("--size", type=int, default=512, help="image size in px (the cache's)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per measured epoch")
    parser.add_argument("--batch", type=int, help="batch size (default: config/hpa.yaml's for the arch)")
    parser.add_argument("--images", type=int, default=2048, help="images in the on-disk cache (1 MiB each at 512 px)")
    parser.add_argument("--tta-images", type=int, default=1024, help="images predicted with 8-view TTA")
    parser.add_argument("--compile", default="off,on", help="off, on, or off,on")
    parser.add_argument("--workers", type=int, default=loader_workers(os.cpu_count() or 1),
                        help="loader processes (default: the pipeline's, threads - 1 on CUDA, 0 on a CPU)")
    parser.add_argument("--cache-dir", type=Path, help="where to write the cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    modes = {"off": False, "on": True}
    bad = [m for m in args.compile.split(",") if m not in modes]
    if bad:
        parser.error(f"--compile {args.compile!r}: give off, on, or off,on")
    args.compile = [modes[m] for m in args.compile.split(",")]
    args.archs = args.archs.split(",")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = pick_device()
    clock = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as tmp:
        cache = write_cache(Path(tmp), args.images, args.size)
        print(f"[gpu] device {device}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; "
              f"cache {args.images} x 4 x {args.size}^2 uint8 on disk ({cache.nbytes / 2**30:.2f} GiB); "
              f"{args.workers} loader workers", flush=True)
        for arch in args.archs:
            for compiled in args.compile:
                results.append(measure(cache, arch, compiled, args, device))
                r = results[-1]
                print(f"[gpu] {arch} compile={'on' if compiled else 'off'} batch {r['batch_size']}: train "
                      f"{r['train_images_per_s']:.1f} images/s, data wait {r['data_wait_fraction']:.1%}, "
                      f"TTA x8 {r['tta_images_per_s']:.1f} images/s, peak GPU memory {r['peak_gpu_memory_gb']} GB, "
                      f"warm-up {r['warmup_seconds']} s", flush=True)
                torch._dynamo.reset()  # a compiled model's graphs would stay cached for the next one
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return report("gpu", {"device": str(device), "size": args.size, "steps": args.steps, "images": args.images,
                          "workers": args.workers, "results": results,
                          "total_seconds": round(time.perf_counter() - clock, 1), "target_total_seconds": 480})

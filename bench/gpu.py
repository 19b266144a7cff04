"""GPU throughput of the real recipe: training and 8-view TTA inference from an on-disk uint8 cache.

    python -m bench gpu [--archs resnet34,densenet121] [--size 512] [--steps 200] [--compile off,on]

For each architecture and compile setting, in one process on one device: the model
as ``config/hpa.yaml`` trains it (bf16 autocast, channels_last, its loss, batch size
and augmentation; random weights, since the weights do not change the speed)
measured against its ceiling (``bench/ceiling.py``): a bare step (the model alone,
resident float data, Adam, BCE), the recipe's ``train_step`` on the same resident
uint8 batches, and ``train_one_epoch`` through the real loader
(``hpa.runtime.loader``) from a memory-mapped uint8 cache written to disk here
(one warm-up epoch first). Per step, the aten ops and the blocking host<->device
transfers of the bare and the recipe's step (``bench/counts.py``: counted on any
device, so a CPU run guards them). Then 8-view TTA (``predict_probs``) against one
forward of the 8 views stacked on resident data. Targets (``TARGETS``): the step at
>= 0.9x the bare step, >= 0.85x with the loader, TTA >= 0.9x bare inference, and on
any device the step's ops at most 1.5x the bare step's with no blocking transfer.

Runs on a CPU too (``--size 32 --steps 2 --batch 4``), which is how it is tested.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from hpa.classes import HPA
from hpa.config.spec import TrainConfig
from hpa.inference.tta import predict_probs
from hpa.labels.sampling import image_weights
from hpa.loop.trainer import train_one_epoch, train_step
from hpa.runtime import distributed
from hpa.runtime.device import pick_device
from hpa.runtime.loader import CachedImages, loader_workers, make_loader, training_loader
from hpa.training.classifier import classifier_trainer

from . import ceiling
from .common import report

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config/hpa.yaml").read_text())
MODELS, PREDICT_BATCH = CONFIG["models"], CONFIG["predict"]["batch_size"]
# Against the ceiling, measured in the same run: the speed ratios on a GPU, the counts on any device.
TARGETS = {"step_vs_bare": 0.9, "train_vs_bare": 0.85, "tta_vs_bare": 0.9, "ops_vs_bare": 1.5, "blocking_copies": 0}
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


def run_epoch(trainer, loader, epoch: int) -> float:
    loader.batch_sampler.set_epoch(epoch)
    return train_one_epoch(trainer, loader, torch.Generator().manual_seed(epoch))


def gpu_busy_share(device: torch.device) -> float | None:
    """The GPU's utilisation over the driver's last sample window (needs pynvml); None on a CPU."""
    if device.type != "cuda":
        return None
    try:
        return torch.cuda.utilization(device) / 100
    except Exception:  # no NVML on this machine: the figure is optional
        return None


def measure(cache, arch: str, compiled: bool, args, device: torch.device) -> dict:
    """For one model and compile setting: the bare step, the recipe's step on the same resident batches,
    train_one_epoch through the real loader, then TTA against bare inference; op and copy counts per step."""
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cfg = recipe(arch, args.batch, compiled)
    n = args.steps * cfg.batch_size
    rows = np.resize(np.arange(len(cache)), n)  # an epoch of n draws re-reads the cache's rows
    y = (np.random.default_rng(0).random((n, 28)) < 0.1).astype(np.float32)
    trainer = classifier_trainer(cfg, STATS, y, args.steps, distributed.single(device), vocabulary=HPA)
    trainer.start_epoch(cfg.freeze_epochs + 1)  # the whole network trains, as after the frozen epochs
    batches = [(torch.from_numpy(cache[rows[i : i + cfg.batch_size]]), torch.from_numpy(y[i : i + cfg.batch_size]))
               for i in range(0, n, cfg.batch_size)]
    bare, generator = ceiling.bare_step(trainer), torch.Generator().manual_seed(0)
    step = lambda x, y: train_step(trainer, x, y, generator)  # noqa: E731
    floats, uint8s = ceiling.resident(batches, trainer, torch.float32), ceiling.resident(batches, trainer)
    bare_ops, bare_blocking = ceiling.per_step(bare, floats[0])
    ops, blocking = ceiling.per_step(step, uint8s[0])
    bare_rate = ceiling.images_per_s(bare, floats, device)
    step_rate = ceiling.images_per_s(step, uint8s, device)
    busy = gpu_busy_share(device)
    loader = real_loader(cache, rows, y, cfg, device, args.workers)
    start = time.perf_counter()
    run_epoch(trainer, loader, 0)  # warm-up: loader workers starting, compilation
    warmup = time.perf_counter() - start
    epoch = run_epoch(trainer, loader, 1)
    tta_rows = np.resize(np.arange(len(cache)), args.tta_images)
    tta_loader = make_loader(CachedImages(cache, tta_rows), PREDICT_BATCH, workers=args.workers)
    predict = functools.partial(predict_probs, trainer.model, device=device, tta="dihedral", amp=trainer.amp_dtype,
                                n_classes=y.shape[1])
    predict([next(iter(tta_loader))])
    start = time.perf_counter()
    predict(tta_loader)
    tta_rate = args.tta_images / (time.perf_counter() - start)
    tta_batches = [(trainer.to_device(torch.from_numpy(cache[tta_rows[i : i + PREDICT_BATCH]]).float()), None)
                   for i in range(0, args.tta_images, PREDICT_BATCH)]
    bare_tta = ceiling.bare_inference_images_per_s(trainer.model, tta_batches, 8, trainer)
    return {
        "arch": arch, "compile": compiled, "batch_size": cfg.batch_size, "amp": str(trainer.amp_dtype),
        "channels_last": trainer.memory_format == torch.channels_last, "warmup_seconds": round(warmup, 1),
        "bare_images_per_s": round(bare_rate, 1), "step_images_per_s": round(step_rate, 1),
        "step_vs_bare": round(step_rate / bare_rate, 3), "train_images_per_s": round(epoch["images_per_s"], 1),
        "train_vs_bare": round(epoch["images_per_s"] / bare_rate, 3),
        "data_wait_fraction": round(epoch["data_wait_fraction"], 4), "gpu_busy_share": busy,
        "device_ops_per_step": ops, "bare_device_ops_per_step": bare_ops, "ops_vs_bare": round(ops / bare_ops, 3),
        "blocking_copies_per_step": blocking, "bare_blocking_copies_per_step": bare_blocking,
        "tta_views": 8, "tta_images_per_s": round(tta_rate, 1), "bare_tta_images_per_s": round(bare_tta, 1),
        "tta_vs_bare": round(tta_rate / bare_tta, 3), "peak_gpu_memory_gb": peak_memory_gb(device),
        "targets": TARGETS,
        "holds": bool(ops <= TARGETS["ops_vs_bare"] * bare_ops and blocking == 0) and (
            device.type != "cuda" or bool(step_rate >= TARGETS["step_vs_bare"] * bare_rate
                                          and epoch["images_per_s"] >= TARGETS["train_vs_bare"] * bare_rate
                                          and tta_rate >= TARGETS["tta_vs_bare"] * bare_tta)),
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
                print(f"[gpu] {arch} compile={'on' if compiled else 'off'} batch {r['batch_size']}: bare "
                      f"{r['bare_images_per_s']:.1f} images/s, step {r['step_vs_bare']:.2f}x, train "
                      f"{r['train_images_per_s']:.1f} images/s ({r['train_vs_bare']:.2f}x), data wait "
                      f"{r['data_wait_fraction']:.1%}; ops/step {r['device_ops_per_step']} vs bare "
                      f"{r['bare_device_ops_per_step']}, blocking copies/step {r['blocking_copies_per_step']}; "
                      f"TTA x8 {r['tta_images_per_s']:.1f} images/s ({r['tta_vs_bare']:.2f}x bare); "
                      f"peak GPU memory {r['peak_gpu_memory_gb']} GB, warm-up {r['warmup_seconds']} s", flush=True)
                torch._dynamo.reset()  # a compiled model's graphs would stay cached for the next one
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return report("gpu", {"device": str(device), "size": args.size, "steps": args.steps, "images": args.images,
                          "workers": args.workers, "results": results,
                          "total_seconds": round(time.perf_counter() - clock, 1), "target_total_seconds": 480})

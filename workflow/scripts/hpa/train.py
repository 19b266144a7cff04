"""Training one model on one fold: config, data loading, the epoch loop, checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from . import distributed
from .augment import AugmentConfig, augment_batch
from .classes import NUM_CLASSES
from .data import labels_to_matrix, read_manifest
from .distributed import Ranks
from .ensemble import probability_table
from .images import open_cache
from .io import atomic_path, read_json, setup_logging, write_csv
from .losses import build_loss
from .metrics import f1_per_class, macro_f1
from .models import build_model
from .optim import build_optimizer, build_schedule
from . import sampling
from .thresholds import fit_per_class, predict

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """One entry under ``models:`` in the config (defaults match the schema; a test checks)."""

    arch: str = "resnet18"
    pretrained: str | None = None
    weights: str | None = None
    stem: str = "mean_rg"
    normalize: str = "dataset"
    dropout: float = 0.0
    head: str = "linear"
    se_reduction: int = 16
    extra_blocks: int = 0
    reconstruction_weight: float = 0.0
    loss: str | dict = "bce"
    stages: list = field(default_factory=list)
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    pos_weight_power: float = 0.5
    hard_fraction: float = 0.1
    optimizer: str = "adam"
    lr: float = 1e-3
    body_lr_mult: float = 1.0
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    accumulate: int = 1
    clip_grad_norm: float | None = None
    freeze_epochs: int = 0
    patience: int | None = None
    keep: str = "last"
    validate_every: int = 1
    oversample: bool = False
    augment: dict = field(default_factory=lambda: dataclasses.asdict(AugmentConfig()))
    amp: str | None = None
    channels_last: bool = True
    compile: bool = False
    processes: int = 1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model key(s) {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls(**d)
        cfg.augment = dataclasses.asdict(AugmentConfig.from_dict(cfg.augment))
        cfg.stage_losses()  # fail at config time, not after hours of the first stage
        if cfg.keep not in KEEP:
            raise ValueError(f"keep: {cfg.keep!r}; choose one of {list(KEEP)}")
        if cfg.validate_every < 1 or (cfg.validate_every > 1 and cfg.keep == "best"):
            raise ValueError(f"validate_every: {cfg.validate_every}; give 1, or more with keep: last "
                             "(keep: best must see every epoch's validation score)")
        if cfg.patience is not None and cfg.keep != "best":
            raise ValueError("patience stops at the best validation epoch, so it needs keep: best "
                             "(keep: last trains a fixed number of epochs)")
        distributed.check_batch_size(cfg.batch_size, Ranks(world=cfg.processes))
        return cfg

    def stage_losses(self) -> list[tuple[int, str | dict, float]]:
        """(first epoch, loss, lr multiplier) of each training stage; one stage unless ``stages`` is set.

        Each stage but the last says how many epochs it lasts; the last runs to ``epochs``.
        """
        if not self.stages:
            return [(1, self.loss, 1.0)]
        starts, first = [], 1
        for i, stage in enumerate(self.stages):
            unknown = set(stage) - {"loss", "epochs", "lr_mult"}
            if unknown or "loss" not in stage:
                raise ValueError(f"stages[{i}]: give loss (and epochs, lr_mult); unknown keys {sorted(unknown)}")
            starts.append((first, stage["loss"], float(stage.get("lr_mult", 1.0))))
            if i < len(self.stages) - 1:
                first += int(stage.get("epochs", 0))
        if first > self.epochs:
            raise ValueError(
                f"stages: the stages before the last last until epoch {first - 1}, but epochs is "
                f"{self.epochs}; raise epochs or shorten the stages"
            )
        return starts

    def digest(self) -> str:
        """Identity of this config, so a checkpoint is only resumed by the run that wrote it."""
        return config_digest(dataclasses.asdict(self))


def stage_at(stages: list[tuple[int, str | dict, float]], epoch: int) -> int:
    """Index of the stage (from ``TrainConfig.stage_losses``) that ``epoch`` belongs to."""
    return max(i for i, (first, _, _) in enumerate(stages) if first <= epoch)


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def run_identity(config: dict, *arrays) -> dict:
    """What a resumable ``last.pt`` must match: the config and the data (rows, targets) it trains on."""
    data = b"".join(np.asarray(a).tobytes() for a in arrays)
    return {"config": config_digest(config), "rows": hashlib.sha256(data).hexdigest()[:16]}


def cpu_state(module: torch.nn.Module) -> dict:
    """A copy of the module's weights on the CPU, safe to keep while training goes on."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# Which epoch a fold keeps. "best" picks it by validation macro F1 at thresholds fitted on
# that same fold, the images whose OOF probabilities later fit the thresholds and make the
# honest estimate: a selection those numbers cannot see. "last" (a fixed epoch count, the
# end of a cosine or one-cycle schedule) leaves the OOF images unseen by any choice.
KEEP = ("last", "best")

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(device: torch.device, requested: str | None) -> torch.dtype | None:
    """The autocast dtype that ``amp: requested`` gets on ``device``; None means fp32.

    CUDA: bf16 where the GPU has it (Ampere and later), else fp16 with loss scaling. CPU:
    bf16 only with native instructions (AVX512-BF16 or AMX), where the demo's ResNet18 trains
    about 1.5x faster than in fp32; emulated bf16 is slower than fp32, and CPU fp16 is not
    offered. A downgrade is logged, so the run says what it did.
    """
    if requested is None:
        return None
    wanted = AMP_DTYPES[requested]
    if device.type == "cuda":
        if wanted == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
            log.warning("amp: bf16 requested but this GPU has no native bf16; using fp16 with loss scaling")
            return torch.float16
        return wanted
    if wanted == torch.bfloat16 and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return wanted
    log.warning("amp: %s requested but this CPU has no native %s; training in fp32", requested, requested)
    return None


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def progress(iterable, **kwargs):
    """A progress bar on a terminal; nothing in a log file, where epoch lines say it all."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, dynamic_ncols=True, **kwargs)


def build_from_config(cfg: TrainConfig, stats: dict, *, pretrained: bool = True):
    """The model a config describes; ``pretrained=False`` skips weights a checkpoint will replace."""
    return build_model(
        cfg.arch, stats["mean"], stats["std"], cfg.pretrained if pretrained else None, cfg.dropout,
        cfg.stem, cfg.weights if pretrained else None, head=cfg.head, se_reduction=cfg.se_reduction,
        extra_blocks=cfg.extra_blocks, decoder=cfg.reconstruction_weight > 0, normalize=cfg.normalize,
    )


class Trainer:
    """The model, its optimisation and the device-specific settings of one training run (one rank's)."""

    def __init__(self, cfg: TrainConfig, stats: dict, y_train: np.ndarray, steps_per_epoch: int,
                 ranks: Ranks | None = None):
        self.cfg = cfg
        self.ranks = ranks or distributed.single(pick_device())
        self.device = self.ranks.device
        cuda = self.device.type == "cuda"
        self.model = build_from_config(cfg, stats).to(self.device)
        self.memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        params = dataclasses.asdict(cfg)
        self.stages = cfg.stage_losses()
        self.losses = [build_loss(loss, params, y_train).to(self.device) for _, loss, _ in self.stages]
        self.loss_fn = self.losses[0]
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.body_lr_mult)
        self.scheduler = build_schedule(
            self.optimizer, cfg.schedule, cfg.epochs, math.ceil(steps_per_epoch / cfg.accumulate),
            cfg.warmup_epochs, step_epochs=cfg.step_epochs, gamma=cfg.step_gamma,
            epoch_factor=lambda epoch: self.stages[stage_at(self.stages, epoch)][2],
        )
        self.amp_dtype = autocast_dtype(self.device, cfg.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.predict = torch.compile(self.model) if cfg.compile else self.model
        self.forward = self._parallel() if self.ranks.distributed else self.predict
        self.augment = AugmentConfig.from_dict(cfg.augment)
        if cuda:
            torch.backends.cudnn.benchmark = True

    def _parallel(self):
        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # A frozen body sends no gradients for a while; DDP must be told to expect that.
        ddp = DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                                      find_unused_parameters=self.cfg.freeze_epochs > 0)
        return torch.compile(ddp) if self.cfg.compile else ddp

    def start_epoch(self, epoch: int) -> None:
        """Stage loss and frozen body for ``epoch`` (the learning rate follows the schedule)."""
        self.loss_fn = self.losses[stage_at(self.stages, epoch)]
        for p in self.model.body_parameters():
            p.requires_grad_(epoch > self.cfg.freeze_epochs)

    def compute_loss(self, x, y):
        """Classification loss, plus the decoder's reconstruction error when the model has one (dual loss)."""
        if not self.cfg.reconstruction_weight:
            return self.loss_fn(self.forward(x).float(), y)
        logits, reconstruction = self.forward(x, reconstruct=True)
        target = self.model.normalize(x)
        return self.loss_fn(logits.float(), y) + self.cfg.reconstruction_weight * F.mse_loss(
            reconstruction.float(), target
        )

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, x):
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


# Steps between checks that the training loss is finite. Each check waits for the device to
# finish; checking every step would make the GPU wait for the host twice per step.
FINITE_CHECK_STEPS = 16


def check_finite(total: torch.Tensor, seen: int) -> None:
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"training loss became {total.item()} within the {FINITE_CHECK_STEPS} steps before image "
            f"{seen}; lower lr, set clip_grad_norm, or check the inputs"
        )


def train_one_epoch(trainer: Trainer, loader, generator: torch.Generator) -> dict:
    """One pass over ``loader``; returns mean loss, images/s and the time spent waiting for data.

    The loss is summed on the device and read back every ``FINITE_CHECK_STEPS`` steps and at
    the end, so the host never waits on the device between those.
    """
    model, cfg = trainer.model, trainer.cfg
    model.train()
    total, seen, waiting = torch.zeros((), device=trainer.device), 0, 0.0
    start = tick = time.perf_counter()
    trainer.optimizer.zero_grad(set_to_none=True)
    batches = progress(loader, desc="train", total=len(loader))
    for step, (x, y) in enumerate(batches, 1):
        waiting += time.perf_counter() - tick
        x, y = trainer.to_device(x), y.to(trainer.device, non_blocking=True)
        x = augment_batch(x, trainer.augment, generator)
        update = step % cfg.accumulate == 0 or step == len(loader)
        # Between accumulation steps, ranks keep their gradients local: one all-reduce per update.
        sync = contextlib.nullcontext() if update or not trainer.ranks.distributed else trainer.forward.no_sync()
        with sync:
            with trainer.autocast():
                loss = trainer.compute_loss(x, y)
            trainer.scaler.scale(loss / cfg.accumulate).backward()
        total += loss.detach().float() * len(x)
        seen += len(x)
        if step % FINITE_CHECK_STEPS == 0 or step == len(loader):
            check_finite(total, seen)
        if update:
            if cfg.clip_grad_norm:
                trainer.scaler.unscale_(trainer.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.scheduler.step()
        tick = time.perf_counter()
    seconds = time.perf_counter() - start
    total, all_seen = distributed.sum_over_ranks(trainer.ranks, float(total), seen)
    return {"train_loss": total / max(all_seen, 1), "images_per_s": all_seen / max(seconds, 1e-9),
            "data_wait_fraction": waiting / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(trainer: Trainer, loader) -> tuple[np.ndarray, dict]:
    """Validation probabilities and metrics: loss, macro F1 at 0.5 and at fitted thresholds.

    Each rank scores its shard of the validation images (``loader``); the
    shards are gathered in order, so every rank holds the same result.
    """
    trainer.model.eval()
    distributed.broadcast_buffers(trainer.model, trainer.ranks)
    probs, targets, losses = [np.zeros((0, NUM_CLASSES), np.float32)], [np.zeros((0, NUM_CLASSES))], [np.zeros(0)]
    for x, y in progress(loader, desc="validate"):
        x, y = trainer.to_device(x), y.to(trainer.device, non_blocking=True)
        with trainer.autocast():
            logits = trainer.predict(x).float()
        losses.append(np.full(1, trainer.loss_fn(logits, y).item() * len(x)))
        probs.append(torch.sigmoid(logits).cpu().numpy())
        targets.append(y.cpu().numpy())
    p, y, loss = distributed.gather_rows(trainer.ranks, *(np.concatenate(a) for a in (probs, targets, losses)))
    y = y.astype(bool)
    # Thresholds fitted on the same images: optimistic, but it ranks epochs by
    # what the threshold stage will make of them.
    fitted = predict(p, fit_per_class(p, y))
    metrics = {"val_loss": float(loss.sum() / len(p)), "val_macro_f1": macro_f1(y, p >= 0.5),
               "val_macro_f1_fitted": macro_f1(y, fitted)}
    metrics.update({f"f1_{k}": v for k, v in enumerate(f1_per_class(y, fitted))})
    return p, metrics


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(not torch.cuda.is_available(), warn_only=True)


def fit_fold(
    cfg: TrainConfig,
    cache: np.ndarray,
    train_rows,
    y_train: np.ndarray,
    val_rows,
    y_val: np.ndarray,
    stats: dict,
    *,
    checkpoint_path,
    workers: int = 0,
    class_weights=None,
    extra: dict | None = None,
    ranks: Ranks | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Train, keep the last epoch (or the best by validation macro F1); return (history, OOF probs).

    After every epoch the full training state goes to ``last.pt`` beside the
    checkpoint (atomically), and a rerun of the same config resumes from it:
    shuffling and augmentation are seeded per epoch, so a resumed run
    reproduces an uninterrupted one. Under ``ranks`` (several processes)
    every rank runs this; all take the same decisions, rank 0 writes the files.
    """
    ranks = ranks or distributed.single(pick_device())
    distributed.check_batch_size(cfg.batch_size, ranks)
    seed_everything(cfg.seed)
    if cfg.oversample and class_weights is None:
        class_weights = sampling.class_weights(y_train.sum(0))
    train_set = CachedImages(cache, train_rows, y_train)
    steps = len(train_set) // cfg.batch_size if len(train_set) > cfg.batch_size else 1
    trainer = Trainer(cfg, stats, y_train, steps, ranks)
    mine = distributed.shard(len(val_rows), ranks)
    val_set = CachedImages(cache, np.asarray(val_rows)[mine], np.asarray(y_val)[mine])
    val_loader = make_loader(val_set, max(1, cfg.batch_size * 2 // ranks.world), workers=workers)
    identity = run_identity(dataclasses.asdict(cfg), train_rows)

    last_path = Path(checkpoint_path).with_name("last.pt")
    history, best, start = [], None, 1
    if last_path.exists():
        saved = torch.load(last_path, map_location=trainer.device, weights_only=False)
        if saved.get("identity") == identity:
            trainer.load_state(saved["state"])
            history, best, start = saved["history"], saved["best"], saved["epoch"] + 1
            log.info("resuming from %s after epoch %d", last_path, saved["epoch"])
        else:
            log.info("ignoring %s: written by a different config or fold", last_path)

    stale = 0 if best is None else history[-1]["epoch"] - best["epoch"]
    for epoch in progress(range(start, cfg.epochs + 1), desc="epochs", initial=start - 1, total=cfg.epochs):
        if cfg.patience is not None and stale >= cfg.patience:
            log.info("early stop: no improvement for %d epochs", stale)
            break
        trainer.start_epoch(epoch)
        seed = cfg.seed * 100_003 + epoch
        loader = training_loader(train_set, cfg, seed, ranks, class_weights=class_weights, workers=workers)
        row = {"epoch": epoch, "stage": stage_at(trainer.stages, epoch), "lr": trainer.optimizer.param_groups[-1]["lr"]}
        row.update(train_one_epoch(trainer, loader, torch.Generator().manual_seed(seed + 1 + 7919 * ranks.rank)))
        # With keep: last, validation only draws the learning curve, so it may skip epochs;
        # the kept (last) epoch is always validated, since its probabilities are the OOF table.
        validate = epoch % cfg.validate_every == 0 or epoch == cfg.epochs
        if validate:
            probs, metrics = evaluate(trainer, val_loader)
            row.update(metrics)
        history.append(row)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items() if not k.startswith("f1_")})
        if validate and (cfg.keep == "last" or best is None
                         or row["val_macro_f1_fitted"] > best["metrics"]["val_macro_f1_fitted"]):
            best = {
                # Weights, config, metrics and epoch, CPU tensors only: a plain torch.load opens
                # it anywhere. The optimizer's state belongs to last.pt, which resumes training.
                "model": cpu_state(trainer.model),
                "epoch": epoch,
                "config": {"model": dataclasses.asdict(cfg), "stats": stats, **(extra or {})},
                "metrics": row,
                "val_probs": probs,
            }
            stale = 0
        elif validate:
            stale += 1
        if ranks.main:
            with atomic_path(last_path) as tmp:
                torch.save({"identity": identity, "epoch": epoch, "state": trainer.state(),
                            "history": history, "best": best}, tmp)

    oof = best.pop("val_probs")
    if ranks.main:
        with atomic_path(checkpoint_path) as tmp:
            torch.save(best, tmp)
        last_path.unlink(missing_ok=True)
    return pd.DataFrame(history), oof


def load_checkpoint(path, device=None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a checkpoint alone: its config carries arch and statistics."""
    device = device or pick_device()
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = TrainConfig.from_dict(ckpt["config"]["model"])
    stats = ckpt["config"]["stats"]
    model = build_from_config(cfg, stats, pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def fold_rows(index: pd.DataFrame, folds: pd.DataFrame, labels: pd.DataFrame, fold: int):
    """Cache rows, label matrices and Ids of a fold's training and validation images."""
    table = index[index["ok"]].merge(folds, on="Id", validate="one_to_one").merge(
        labels[["Id", "Target"]], on="Id", validate="one_to_one"
    )
    if fold not in set(table["fold"]):
        raise ValueError(f"fold {fold} is not in the folds table (folds 0..{table['fold'].max()})")
    train, val = table[table["fold"] != fold], table[table["fold"] == fold]
    return (
        (train["row"].to_numpy(), labels_to_matrix(train["Target"])),
        (val["row"].to_numpy(), labels_to_matrix(val["Target"]), val["Id"].to_numpy()),
    )


def loader_workers(threads: int) -> int:
    """DataLoader processes: on a GPU they keep it fed; on a CPU they would steal the model's cores."""
    return max(0, threads - 1) if pick_device().type == "cuda" else 0


def read_class_weights(path) -> np.ndarray:
    table = pd.read_csv(path).sort_values("class")
    return table["weight"].to_numpy(dtype=float)


def run_job(
    *, cache_npy, cache_index, stats_json, folds_csv, manifest_csv, model_name: str,
    model_cfg: dict, fold: int, checkpoint, history_csv, oof_csv, threads: int = 1,
    sampling_weights=None,
) -> None:
    """The ``train`` rule: one model on one fold, from the cache to a checkpoint.

    With ``processes: N`` in the model's config, N ranks train it together
    (torchrun's launcher; one per GPU) and this process writes their result.
    """
    cfg = TrainConfig.from_dict(model_cfg)
    job = {
        "cache_npy": cache_npy, "cache_index": cache_index, "stats_json": stats_json, "folds_csv": folds_csv,
        "manifest_csv": manifest_csv, "model_name": model_name, "cfg": cfg, "fold": fold,
        "checkpoint": checkpoint, "threads": threads, "sampling_weights": sampling_weights,
        "log_files": [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)],
    }
    if cfg.processes > 1:
        check_gpus(cfg.processes)
        history, oof, val_ids = distributed.launch(cfg.processes, job)
    else:
        history, oof, val_ids = train_fold_job(job, distributed.single(pick_device()))
    write_csv(history.round(6), history_csv)
    write_csv(probability_table(val_ids, oof), oof_csv)


def check_gpus(processes: int) -> None:
    visible = torch.cuda.device_count()
    if torch.cuda.is_available() and visible < processes:
        raise RuntimeError(
            f"processes: {processes} needs {processes} GPUs but this job sees {visible}; give the train "
            f"rule more GPUs (its gpu resource follows processes) or lower processes"
        )


def train_rank(job: dict):
    """One rank's life under torchrun (``hpa.rank_worker``): join the group, train, leave."""
    ranks = distributed.join()
    if ranks.main and job["log_files"]:
        setup_logging(job["log_files"][0], mode="a")
    try:
        return train_fold_job(job, ranks)
    finally:
        distributed.leave(ranks)


def train_fold_job(job: dict, ranks: Ranks):
    """Read the cache, labels and folds of a train job and fit it; returns (history, OOF probs, OOF Ids)."""
    torch.set_num_threads(max(1, job["threads"] // ranks.world))
    cache, index = open_cache(job["cache_npy"], job["cache_index"])
    labels = read_manifest(job["manifest_csv"], split="train")
    folds = pd.read_csv(job["folds_csv"], dtype={"Id": str})
    fold = job["fold"]
    (train_rows, y_train), (val_rows, y_val, val_ids) = fold_rows(index, folds, labels, fold)
    log.info("%s fold %d: %d training, %d validation images on %s (%d process%s)", job["model_name"], fold,
             len(train_rows), len(val_rows), ranks.device, ranks.world, "es" if ranks.distributed else "")
    history, oof = fit_fold(
        job["cfg"], cache, train_rows, y_train, val_rows, y_val, read_json(job["stats_json"]),
        checkpoint_path=job["checkpoint"],
        workers=loader_workers(job["threads"] // ranks.world),
        class_weights=read_class_weights(job["sampling_weights"]) if job["sampling_weights"] else None,
        extra={"name": job["model_name"], "fold": fold, "image_size": int(cache.shape[-1])},
        ranks=ranks,
    )
    return history, oof, val_ids

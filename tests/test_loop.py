"""The shared loop is generic over its task: which epoch keep: best keeps and what the log shows come from the task."""

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hpa.config.spec import LoopConfig
from hpa.loop.fit import Plan, epoch_seed, fit
from hpa.loop.snapshot import cpu_state
from hpa.loop.trainer import Trainer
from hpa.runtime import distributed
from hpa.runtime.loader import CachedImages, training_loader


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4 * 4 * 4, 1)

    def forward(self, x):
        return self.head(x.flatten(1) / 255)

    def body_parameters(self):
        return []

    def head_parameters(self):
        return list(self.head.parameters())


class CountingTask:
    """A task of no classifier: ranked by its own metric, logging only its own field."""

    score = "val_agreement"

    def lr_factor(self, epoch):
        return 1.0

    def start_epoch(self, epoch):
        pass

    def loss(self, trainer, x, y):
        return F.mse_loss(trainer.forward(x).squeeze(1), y[:, 0].float()), {}

    def epoch_metrics(self, sums, seen):
        return {}

    def logged(self, row):
        return {"val_agreement": row["val_agreement"]}

    def snapshot(self, trainer):
        return {"model": cpu_state(trainer.model)}


def test_keep_best_ranks_by_the_tasks_score_and_logs_its_fields(tmp_path, caplog):
    cfg = LoopConfig(epochs=4, batch_size=4, augment={"dihedral": False}, channels_last=False)
    cache = np.random.default_rng(0).integers(0, 255, size=(8, 4, 4, 4), dtype=np.uint8)
    loader = training_loader(CachedImages(cache, np.arange(8), np.ones((8, 28), np.uint8)), 4,
                             distributed.single(torch.device("cpu")), seed_of=lambda e: epoch_seed(cfg, e))
    trainer = Trainer(cfg, Tiny(), CountingTask(), len(loader), distributed.single(torch.device("cpu")))
    agreement = iter([0.2, 0.9, 0.4, 0.3])  # epoch 2 is the best
    plan = Plan(checkpoint=tmp_path / "model.pt", identity={}, config={}, keep="best",
                validate=lambda trainer: (np.zeros((1, 1)), {"val_agreement": next(agreement)}))
    with caplog.at_level(logging.INFO, logger="hpa.loop.fit"):
        run = fit(trainer, loader, plan)
    assert run.kept["epoch"] == 2 == torch.load(tmp_path / "model.pt")["epoch"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert lines[0] == "epoch 1: {'val_agreement': 0.2}", "the log line shows the task's fields only"


def test_the_training_log_says_which_precision_it_computed_in(caplog):
    """README: amp: bf16 runs in bf16 only on CPUs with native bf16; the log must say which, on a CPU too."""
    from hpa.runtime.device import autocast_dtype

    cpu = torch.device("cpu")
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    with caplog.at_level(logging.INFO, logger="hpa.runtime.device"):
        plain, asked = autocast_dtype(cpu, None), autocast_dtype(cpu, "bf16")
    assert plain is None and asked == (torch.bfloat16 if native else None)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert said == ["precision: fp32 on cpu (amp: None)",
                    f"precision: {'bf16' if native else 'fp32'} on cpu (amp: bf16)"]

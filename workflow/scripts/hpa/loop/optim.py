"""Optimizers with differential learning rates, and per-step learning-rate schedules."""

from __future__ import annotations

import math

import torch

# ``fused``: Adam's update of every parameter in one kernel on CUDA (the for-each default is a few per tensor).
OPTIMIZERS = {
    "adam": lambda groups, wd, fused: torch.optim.Adam(groups, weight_decay=wd, fused=fused),
    "adamw": lambda groups, wd, fused: torch.optim.AdamW(groups, weight_decay=wd, fused=fused),
    "sgd": lambda groups, wd, fused: torch.optim.SGD(groups, momentum=0.9, nesterov=True, weight_decay=wd),
}


def build_optimizer(model, name: str, lr: float, weight_decay: float, body_lr_mult: float = 1.0):
    """Head at ``lr``; the (pretrained) body at ``lr * body_lr_mult``, so fine-tuning does not wreck it."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    groups = [
        {"params": model.body_parameters(), "lr": lr * body_lr_mult, "name": "body"},
        {"params": model.head_parameters(), "lr": lr, "name": "head"},
    ]
    fused = next(model.parameters()).device.type == "cuda" or None
    return OPTIMIZERS[name](groups, weight_decay, fused)


def _constant(step, total, warmup, **_):
    return 1.0


def _cosine(step, total, warmup, **_):
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _onecycle(step, total, warmup, **_):
    # Ramp up over the first 30% (or the warmup, if set), then cosine down to ~0.
    peak = warmup or max(1, int(0.3 * total))
    if step < peak:
        return 0.04 + 0.96 * step / peak
    return _cosine(step, total, peak)


def _step(step, total, warmup, steps_per_epoch=1, step_epochs=10, gamma=0.1, **_):
    return gamma ** ((step // max(1, steps_per_epoch)) // step_epochs)


SCHEDULES = {"constant": _constant, "cosine": _cosine, "onecycle": _onecycle, "step": _step}


def build_schedule(optimizer, name: str, epochs: int, steps_per_epoch: int, warmup_epochs: float = 0.0,
                   epoch_factor=None, **kwargs):
    """A LambdaLR stepped once per optimizer step, with linear warmup in front of any schedule.

    ``epoch_factor(epoch)`` (1-based) scales the rate further, e.g. a lower rate for a fine-tuning stage.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    total = max(1, epochs * steps_per_epoch)
    warmup = int(warmup_epochs * steps_per_epoch)
    shape = SCHEDULES[name]

    def factor(step):
        scale = epoch_factor(step // steps_per_epoch + 1) if epoch_factor else 1.0
        if name != "onecycle" and step < warmup:
            return scale * (step + 1) / warmup
        return scale * shape(step, total, warmup, steps_per_epoch=steps_per_epoch, **kwargs)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

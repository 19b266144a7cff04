"""The ceiling a training step and TTA are measured against: the model alone on resident data.

A bare step is zero_grad, forward, BCE, backward and Adam on a batch already on the
device as float, with the recipe's precision and memory format; bare inference is
one forward of the views stacked. Whatever the recipe's step costs beyond that is
the pipeline's own overhead.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from .counts import Counts


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_s(step, batches, device: torch.device) -> float:
    """``step(x, y)`` over ``batches`` after one warm-up call, images per second."""
    step(*batches[0])
    synchronize(device)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    synchronize(device)
    return sum(len(x) for x, _ in batches) / (time.perf_counter() - start)


def per_step(step, batch) -> tuple[int, int]:
    """(aten ops, blocking host<->device transfers) of one ``step(*batch)``, after a warm-up call."""
    step(*batch)
    with Counts() as counts:
        step(*batch)
    return counts.ops, counts.blocking


def bare_step(trainer):
    """A step of the trainer's model (a copy) alone: resident float input, Adam, BCE, its autocast."""
    model = copy.deepcopy(trainer.model).train()
    fused = trainer.device.type == "cuda" or None
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=fused)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with trainer.autocast():
            loss = F.binary_cross_entropy_with_logits(model(x).float(), y)
        loss.backward()
        opt.step()

    return step


def resident(batches, trainer, dtype=None):
    """The batches on the trainer's device in its memory format (as float for the bare step)."""
    return [(trainer.to_device(x if dtype is None else x.to(dtype)), y.to(trainer.device)) for x, y in batches]


def bare_inference_images_per_s(model, batches, views: int, trainer) -> float:
    """Images/s of one forward of each batch's ``views`` copies stacked: the compute TTA cannot avoid."""
    model.eval()

    @torch.no_grad()
    def forward(x, _):
        with trainer.autocast():
            torch.sigmoid(model(torch.cat([x] * views)).float())

    return images_per_s(forward, batches, trainer.device)

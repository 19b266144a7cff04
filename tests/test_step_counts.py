"""The training step's device ops and blocking host<->device copies, counted on the CPU (bench/counts.py).

On a GPU every blocking copy drains the queue and every tiny op is host time, so the recipe's
step must stay within 1.5x the ops of the model's bare step and make no blocking copy.
"""

import numpy as np
import torch

from bench import ceiling
from bench.counts import Counts
from bench.gpu import STATS, recipe
from hpa.classes import HPA
from hpa.dihedral import dihedral
from hpa.loop.trainer import train_step
from hpa.runtime import distributed
from hpa.training.classifier import classifier_trainer


def test_recipe_step_ops_and_blocking_copies_against_the_bare_step():
    torch.manual_seed(0)
    cfg = recipe("resnet34", 8, False)  # config/hpa.yaml's loss (focal + Lovász), augmentation, clipping
    y = torch.from_numpy((np.random.default_rng(0).random((8, 28)) < 0.2).astype(np.float32))
    trainer = classifier_trainer(cfg, STATS, y.numpy(), 4, distributed.single(torch.device("cpu")), vocabulary=HPA)
    trainer.start_epoch(cfg.freeze_epochs + 1)
    x = torch.randint(0, 256, (8, 4, 32, 32), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    ops, blocking = ceiling.per_step(lambda a, b: train_step(trainer, a, b, generator), (x, y))
    bare_ops, bare_blocking = ceiling.per_step(ceiling.bare_step(trainer), (x.float(), y))
    assert blocking == 0 and bare_blocking == 0
    assert ops <= 1.5 * bare_ops, (ops, bare_ops)


def test_the_counts_see_what_would_block_a_gpu():
    """What the step used to do: a host read and an indexed copy per dihedral transform drawn."""
    x, choice = torch.rand(8, 1, 4, 4), torch.arange(8)
    with Counts() as counts:
        out = x.clone()
        for t in choice.unique().tolist():
            idx = (choice == t).nonzero(as_tuple=True)[0].to(x.device)
            out[idx] = dihedral(x[idx], t)
        x.sum().item()
        x.to(x.device, non_blocking=True)  # does not wait: not counted
    assert counts.blocking == 1 + 1 + 8 * 2 + 1  # unique, tolist, 8 x (nonzero, .to), item

"""A GPU job's start-up: seconds from a fresh process to its first training step.

Demo-sized jobs (ResNet18 and the branch CNN at 64 px, batch 32) spend most of their time
starting: the interpreter, torch and the library's imports, building the model and the
trainer (on a GPU: the CUDA context and, with cuDNN's autotuning, a trial of every algorithm
per layer shape), then the first step. Each run is a fresh process, as each Snakemake job is;
the figures are medians of ``REPEATS`` runs, split into imports, model + trainer, first step.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from .common import report

REPEATS = 3
# The child: a train job's imports, its trainer, one step; a mark (seconds since the epoch) after each.
CHILD = """
import sys, time
import numpy as np
import torch
from hpa.classes import HPA
from hpa.training.classifier import classifier_trainer
from hpa.config.spec import TrainConfig
print("imports", time.time(), flush=True)
arch, size = sys.argv[1], int(sys.argv[2])
y = (np.random.default_rng(0).random((32, 28)) < 0.1).astype(np.float32)
cfg = TrainConfig(arch=arch, batch_size=32, augment={"dihedral": True})
trainer = classifier_trainer(cfg, {"mean": [0.1] * 4, "std": [0.2] * 4}, y, 1, vocabulary=HPA, image_size=size)
print("trainer", time.time(), flush=True)
x = torch.randint(0, 256, (32, 4, size, size), dtype=torch.uint8).to(trainer.device)
with trainer.autocast():
    loss, _ = trainer.task.loss(trainer, x, torch.from_numpy(y).to(trainer.device))
loss.backward()
trainer.optimizer.step()
if trainer.device.type == "cuda":
    torch.cuda.synchronize()
print("first_step", time.time(), flush=True)
"""


def once(arch: str, size: int) -> dict[str, float]:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, arch, str(size)], capture_output=True, text=True, check=True)
    marks = dict(line.split() for line in out.stdout.splitlines() if line.count(" ") == 1)
    times = {name: float(value) - start for name, value in marks.items()}
    return {"imports_s": times["imports"], "trainer_s": times["trainer"] - times["imports"],
            "first_step_s": times["first_step"] - times["trainer"], "to_first_step_s": times["first_step"]}


def main() -> dict:
    figures = {}
    for arch in ("resnet18", "branchnet"):
        runs = [once(arch, 64) for _ in range(REPEATS)]
        figures[arch] = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
    return report("startup", figures)

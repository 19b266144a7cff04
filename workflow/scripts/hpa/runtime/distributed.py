"""Data-parallel training within one job: torchrun's launcher, ranks, and global batches.

A job given ``processes: N`` runs N training processes with ``torchrun``
(``python -m torch.distributed.run --standalone``): one per GPU with NCCL, or
N CPU processes with gloo where there is no GPU (how the tests check it). ``batch_size`` stays the global batch: every
rank draws the same epoch order from the same seed and takes its own slice
of each global batch, so N processes see exactly the batches one process
would, and DistributedDataParallel's gradient averaging gives the same
update (BatchNorm statistics are per process on CPU; SyncBatchNorm on GPU).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hpa.config import spec


@dataclass(frozen=True)
class Ranks:
    """Where this process sits: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def single(device: torch.device) -> Ranks:
    return Ranks(0, 1, device)


def join() -> Ranks:
    """Inside a process started by torchrun: join the process group and pick this rank's device."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    return Ranks(rank, world, device)


def leave(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def launch(processes: int, job):
    """Run ``job`` (an ``hpa.runtime.job.FoldJob``) on ``processes`` local ranks with the ``torchrun``
    command; return rank 0's result.

    torchrun starts fresh interpreters on ``hpa.runtime.rank_worker`` (never this
    process's main script, which under Snakemake is the rule's script), so the
    job travels as a pickle file and rank 0's result comes back the same way.
    """
    with tempfile.TemporaryDirectory(prefix="hpa-ranks-") as tmp:
        job_path = Path(tmp) / "job.pkl"
        job_path.write_bytes(pickle.dumps(job))
        library = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [library, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "hpa.runtime.rank_worker", str(job_path)]
        done = subprocess.run(command, env=env)
        result = job_path.with_name(RESULT_NAME)
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(
                f"torchrun with {processes} processes failed (exit {done.returncode}); the failing rank's "
                f"traceback is above (`{' '.join(command[1:6])} ...`)"
            )
        return pickle.loads(result.read_bytes())


RESULT_NAME = "result.pkl"


def epoch_batches(n: int, batch_size: int, generator: torch.Generator, weights=None,
                  drop_last: bool = True) -> list[np.ndarray]:
    """One epoch's global batches of dataset positions: shuffled, or drawn by ``weights`` with replacement.

    The remainder is dropped: a last batch of one image would break BatchNorm.
    """
    if weights is None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.multinomial(torch.as_tensor(weights, dtype=torch.double), n, True, generator=generator)
    order = order.numpy()
    stop = (n // batch_size) * batch_size if drop_last and n > batch_size else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


class RankBatches(torch.utils.data.Sampler):
    """This rank's contiguous slice of each global batch (a DataLoader ``batch_sampler``)."""

    def __init__(self, batches: list[np.ndarray], ranks: Ranks):
        self.batches, self.ranks = batches, ranks

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            yield np.array_split(batch, self.ranks.world)[self.ranks.rank].tolist()


def check_batch_size(batch_size: int, ranks: Ranks) -> None:
    spec.check_batch_size(batch_size, ranks.world)


def gather_rows(ranks: Ranks, *arrays: np.ndarray) -> list[np.ndarray]:
    """Concatenate each array over ranks in rank order (every rank gets the result)."""
    if not ranks.distributed:
        return list(arrays)
    gathered = [None] * ranks.world
    dist.all_gather_object(gathered, arrays)
    return [np.concatenate([part[i] for part in gathered]) for i in range(len(arrays))]


def broadcast_buffers(module: torch.nn.Module, ranks: Ranks) -> None:
    """Give every rank rank 0's BatchNorm running statistics, so all evaluate one model."""
    if ranks.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def shard(n: int, ranks: Ranks) -> np.ndarray:
    """This rank's contiguous share of ``n`` positions (rank order = original order)."""
    return np.array_split(np.arange(n), ranks.world)[ranks.rank]


def sum_over_ranks(ranks: Ranks, *values: float) -> list[float]:
    """Sums of per-rank numbers (e.g. loss totals and image counts), on every rank."""
    if not ranks.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ranks.device)
    dist.all_reduce(tensor)
    return tensor.tolist()

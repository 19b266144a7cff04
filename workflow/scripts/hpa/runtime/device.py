"""Where a run computes and in what precision: device, autocast dtype, seeding."""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_NAMES = {None: "fp32", **{dtype: name for name, dtype in AMP_DTYPES.items()}}


def autocast_dtype(device: torch.device, requested: str | None) -> torch.dtype | None:
    """The autocast dtype that ``amp: requested`` gets on ``device``; None means fp32.

    CUDA: bf16 where the GPU has it (Ampere and later), else fp16 with loss scaling. CPU:
    bf16 only with native instructions (AVX512-BF16 or AMX), where the demo's ResNet18 trains
    about 1.5x faster than in fp32; emulated bf16 is slower than fp32, and CPU fp16 is not
    offered. The outcome is logged (a downgrade as a warning), so the run says what it did.
    """
    dtype = _resolve_amp(device, requested)
    # Said on every device, so a run's training log tells which precision its scores came from.
    log.info("precision: %s on %s (amp: %s)", PRECISION_NAMES[dtype], device.type, requested)
    return dtype


def _resolve_amp(device: torch.device, requested: str | None) -> torch.dtype | None:
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


def compute_threads(threads: int) -> int:
    """torch's intra-op threads for a job given ``threads``: all of them beside a GPU (they prepare its
    batches), one on a CPU. On a CPU, sums over more threads run in another order, so results would
    depend on how many cores a machine gives a job: with one, the demo scores the same on a 2-core
    laptop, a workstation and a cluster node, and a CPU-only run gives each job a core of its own."""
    return max(1, threads) if pick_device().type == "cuda" else 1


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(not torch.cuda.is_available(), warn_only=True)

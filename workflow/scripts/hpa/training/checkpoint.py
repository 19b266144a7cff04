"""What a run saves and how it is recognised on resume: identities, CPU copies, loading."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from hpa.training.config import TrainConfig, build_from_config, config_digest
from hpa.runtime.device import pick_device


def run_identity(config: dict, *arrays) -> dict:
    """What a resumable ``last.pt`` must match: the config and the data (rows, targets) it trains on."""
    data = b"".join(np.asarray(a).tobytes() for a in arrays)
    return {"config": config_digest(config), "rows": hashlib.sha256(data).hexdigest()[:16]}


def cpu_state(module: torch.nn.Module) -> dict:
    """A copy of the module's weights on the CPU, safe to keep while training goes on."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def load_checkpoint(path, device=None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a model from a checkpoint alone: its config carries arch and statistics."""
    device = device or pick_device()
    ckpt = torch.load(path, map_location=device, weights_only=False)
    cfg = TrainConfig.from_dict(ckpt["config"]["model"])
    stats = ckpt["config"]["stats"]
    model = build_from_config(cfg, stats, pretrained=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt

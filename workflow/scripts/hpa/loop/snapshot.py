"""What a run saves and how it is recognised on resume: identities and CPU copies (``hpa.runtime.checkpoint``
writes and reads the files)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from hpa.loop.config import config_digest


def run_identity(config: dict, *arrays) -> dict:
    """What a resumable ``last.pt`` must match: the config and the data (rows, targets) it trains on."""
    data = b"".join(np.asarray(a).tobytes() for a in arrays)
    return {"config": config_digest(config), "rows": hashlib.sha256(data).hexdigest()[:16]}


def cpu_state(module: torch.nn.Module) -> dict:
    """A copy of the module's weights on the CPU, safe to keep while training goes on."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

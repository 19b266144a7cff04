"""The start every GPU rule's script shares: its log, its inputs staged to scratch, its GPUs leased.

This module imports nothing from torch, and neither may the script before the ``with``:
the GPUs are chosen first, so CUDA only ever sees the job's own devices. Import the job's
code (anything that imports torch) inside the block.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.runtime.gpu_lease import lease_gpus
from hpa.runtime.gpu_memory import share_slots

log = logging.getLogger(__name__)


def leased_share(resources) -> int:
    """The slots of one GPU a job that shares it holds: its ``gpu_mem_mb`` of the ``gpu_capacity_mb``
    the workflow sized it against (workflow/rules/resources.smk); 0 for a job with whole GPUs, or none."""
    need, capacity = getattr(resources, "gpu_mem_mb", 0), getattr(resources, "gpu_capacity_mb", 0)
    if getattr(resources, "gpu", 0) > 0 or not need or not capacity:
        return 0
    return share_slots(need, capacity)


def log_gpu_memory(estimate_mb: int) -> None:
    """The job's peak GPU memory beside what it asked for, so that the estimate can be checked."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        peak = torch.cuda.max_memory_reserved() / 1e6
        log.info("GPU memory: %.0f MB peak reserved by torch (plus the CUDA context); asked for %s MB",
                 peak, estimate_mb or "a whole GPU's")


@contextlib.contextmanager
def gpu_job(smk, staged=()):
    """Log to the rule's log, copy ``staged`` inputs to node-local scratch (with ``scratch`` set: a runtime
    setting, not a param) and hold the rule's ``gpu`` resource worth of GPUs, or its share of one;
    yields the paths to read ``staged`` from, in order."""
    setup_logging(smk.log[0])
    paths = stage(list(staged), smk.config.get("scratch"))
    with lease_gpus(smk.resources.gpu, holder=smk.log[0], share=leased_share(smk.resources)):
        yield paths
        log_gpu_memory(getattr(smk.resources, "gpu_mem_mb", 0))

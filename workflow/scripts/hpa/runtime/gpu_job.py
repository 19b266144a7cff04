"""The start every GPU rule's script shares: its log, its inputs staged to scratch, its GPUs leased.

This module imports nothing from torch, and neither may the script before the ``with``:
the GPUs are chosen first, so CUDA only ever sees the job's own devices. Import the job's
code (anything that imports torch) inside the block.
"""

from __future__ import annotations

import contextlib

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.runtime.gpu_lease import lease_gpus


@contextlib.contextmanager
def gpu_job(smk, staged=()):
    """Log to the rule's log, copy ``staged`` inputs to node-local scratch (with ``scratch`` set: a runtime
    setting, not a param) and hold the rule's ``gpu`` resource worth of GPUs; yields the paths to read
    ``staged`` from, in order."""
    setup_logging(smk.log[0])
    paths = stage(list(staged), smk.config.get("scratch"))
    with lease_gpus(smk.resources.gpu, holder=smk.log[0]):
        yield paths

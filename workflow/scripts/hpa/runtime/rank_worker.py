"""One rank of a multi-process training job: ``torchrun ... -m hpa.runtime.rank_worker JOB_PICKLE``.

Started by ``hpa.runtime.distributed.launch``; rank 0 leaves its result beside the job file.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

from hpa.runtime.distributed import RESULT_NAME
from hpa.runtime.job import train_rank

job_path = Path(sys.argv[1])
result = train_rank(pickle.loads(job_path.read_bytes()))
if os.environ["RANK"] == "0":
    job_path.with_name(RESULT_NAME).write_bytes(pickle.dumps(result))

"""Running independent tasks in worker processes."""

from __future__ import annotations

import multiprocessing as mp


def run_tasks(fn, tasks: list, workers: int = 1, chunksize: int = 8) -> list:
    """``[fn(t) for t in tasks]`` in ``workers`` forked processes (in order of completion)."""
    if workers > 1 and len(tasks) > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            return list(pool.imap_unordered(fn, tasks, chunksize=chunksize))
    return [fn(t) for t in tasks]

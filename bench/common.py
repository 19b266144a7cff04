"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from hpa.files import write_json

OUT = Path("results/benchmarks")


def timed(fn, *args, repeat: int = 1, **kwargs):
    """(result, best wall time in seconds over ``repeat`` runs)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return result, best


def report(name: str, figures: dict) -> dict:
    """Print one benchmark's figures and write them to results/benchmarks/{name}.json."""
    record = {
        "benchmark": name,
        "machine": {"cpus": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        **figures,
    }
    write_json(record, OUT / f"{name}.json")
    print(f"[{name}] " + json.dumps(figures))
    return record

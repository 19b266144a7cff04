"""Run every benchmark: ``python -m bench`` (or ``python -m bench NAME ...`` for some).

``scale`` and ``gpu`` take options and run only when named:
``python -m bench scale --n 1000,10000,real``, ``python -m bench gpu --help``.

Each prints its figures and ratio, measured in one run, and writes
results/benchmarks/NAME.json. Timings on a shared machine are noisy: the
ratios compare two things measured back to back, which is what they are for.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["cache", "input_pipeline", "loader", "train_step", "thresholds", "dedup", "source_duplicates",
              "cooccurrence", "cells", "cell_labels", "demo", "startup"]

# Run only when named, with their own options: python -m bench scale --n 1000,10000,real
WITH_OPTIONS = ["scale", "gpu"]


def main(names: list[str]) -> None:
    if names[:1] == ["ablations"]:  # reads a finished benchmark run: python -m bench ablations RUN_DIR
        importlib.import_module("bench.ablations").main(*names[1:2])
        return
    if names[:1] == ["crops"]:  # reads two finished runs: python -m bench crops WHOLE_DIR CROPS_DIR
        importlib.import_module("bench.crops").main(*names[1:3])
        return
    if names[:1] and names[0] in WITH_OPTIONS:
        importlib.import_module(f"bench.{names[0]}").main(names[1:])
        return
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS} or one of {WITH_OPTIONS} with its options")
    for name in names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])

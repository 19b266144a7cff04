"""Scale run of everything but training, on generated data of the real size.

    python -m bench scale [--n 1000,10000,real] [--threads T] [--keep DIR]

For each N, writes a Kaggle-layout dataset of N 32 px images (train, test and
an HPAv18-like external list in the real proportions; ``real`` is 31,072 train
+ 11,702 test + 74,606 external) with download records, then runs every stage
from hashing to the submission, and the embedding neighbour and duplicate
searches over random 512-d unit vectors, each stage in a fresh process
(``bench.scale_stages``: each rule's own script). Probabilities and embeddings, the outputs of the GPU
stages left out, are generated in between (the "setup" rows).

Prints per stage and N: seconds and peak memory, then the growth from the
second-largest to the largest N: the CPU-time ratio against the n log n ratio.
Targets at the real size: no stage grows faster than n log n, peak memory
under 4 GB per stage, the whole run under 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import scale_data
from .common import report
from .scale_stages import STAGES

REPO = scale_data.REPO
TARGET_PEAK_MB = 4096
TARGET_TOTAL_S = 30 * 60

# Generated stand-ins for what the stages left out (download, predict, embed) would write,
# each made just before the first stage that reads it.
SETUP = {
    "vocabulary": ("write_dataset", scale_data.write_dataset),
    "blend": ("write_probabilities", lambda layout, n: scale_data.write_probabilities(layout)),
    "embedding_neighbours": ("write_fold_embeddings", lambda layout, n: scale_data.write_fold_embeddings(layout)),
}


def parse_sizes(text: str) -> list[int | str]:
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if part != "real" and not (part.isdigit() and int(part) >= 100):
            raise SystemExit(f"--n: {part!r} is neither 'real' nor a whole number of images >= 100 "
                             f"(e.g. --n 1000,10000,real)")
        sizes.append(part if part == "real" else int(part))
    return sizes


def run_stage(stage: str, root: Path, threads: int) -> dict:
    """One stage in a fresh interpreter; its JSON line, plus the process's wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.scale_stages", stage, str(root), str(threads)],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures | {"process_seconds": round(time.perf_counter() - start, 3)}


def run_size(n, root: Path, threads: int) -> dict:
    """Every stage at one size: {"sizes", "stages": {name: figures}, "setup": {name: seconds}, "total_seconds"}."""
    layout, sizes, stages, setup = scale_data.Layout(root), scale_data.split_sizes(n), {}, {}
    print(f"[scale] N={n}: {sizes['train']:,} train + {sizes['test']:,} test + {sizes['external']:,} external",
          flush=True)
    clock = time.perf_counter()
    for stage in STAGES:
        if stage in SETUP:
            name, write = SETUP[stage]
            start = time.perf_counter()
            write(layout, n)
            setup[name] = round(time.perf_counter() - start, 3)
            print(f"[scale] N={n} setup {name}: {setup[name]:.2f} s", flush=True)
        stages[stage] = run_stage(stage, root, threads)
        print(f"[scale] N={n} {stage}: {stages[stage]['seconds']:.2f} s ({stages[stage]['cpu_seconds']:.2f} s CPU), "
              f"peak {stages[stage]['peak_mb']:.0f} MB", flush=True)
    total = time.perf_counter() - clock
    return {"n": n, "images": sum(sizes.values()), "sizes": sizes, "stages": stages, "setup": setup,
            "total_seconds": round(total, 1), "load_average": os.getloadavg()}


def growth(small: dict, large: dict) -> dict:
    """Per stage: CPU-time ratio large / small against the n log n ratio of their image counts.

    CPU seconds, not wall: on a shared machine the wall time of the same work varies with
    the others' load, its CPU time less (not nothing: caches and memory bandwidth are shared).
    """
    a, b = small["images"], large["images"]
    nlogn = b * math.log(b) / (a * math.log(a))
    out = {}
    for stage, fig in large["stages"].items():
        ratio = fig["cpu_seconds"] / max(small["stages"][stage]["cpu_seconds"], 1e-3)
        out[stage] = {"cpu_ratio": round(ratio, 2), "nlogn_ratio": round(nlogn, 2), "holds": ratio <= nlogn}
    return out


def print_table(runs: list[dict], grew: dict | None) -> None:
    head = "".join(f"{'N=' + str(r['n']):>28}" for r in runs)
    print(f"\n{'':<22}{head}")
    print(f"{'stage':<22}" + f"{'wall s':>11}{'cpu s':>9}{'peak MB':>8}" * len(runs)
          + "   growth: cpu x / n log n x")
    for stage in STAGES:
        cells = "".join(f"{r['stages'][stage]['seconds']:>11.2f}{r['stages'][stage]['cpu_seconds']:>9.2f}"
                        f"{r['stages'][stage]['peak_mb']:>8.0f}" for r in runs)
        tail = ""
        if grew:
            g = grew[stage]
            tail = f"   {g['cpu_ratio']:>6.1f} / {g['nlogn_ratio']:.1f} {'ok' if g['holds'] else 'FASTER THAN n log n'}"
        print(f"{stage:<22}{cells}{tail}")
    print(f"{'total (wall, setup too)':<22}" + "".join(f"{r['total_seconds']:>11.1f}{'':>17}" for r in runs))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1000,10000,real", help="image counts, comma-separated; 'real' = real size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads each stage may use")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    runs = []
    for n in parse_sizes(args.n):
        if args.keep:
            root = args.keep / f"n{n}"
            if root.exists():
                raise SystemExit(f"--keep: {root} exists (a previous run's data); remove it or give another folder")
            runs.append(run_size(n, root, args.threads))
            continue
        with tempfile.TemporaryDirectory(prefix=f"hpa-scale-{n}-") as tmp:
            runs.append(run_size(n, Path(tmp), args.threads))
    grew = growth(runs[-2], runs[-1]) if len(runs) > 1 else None
    print_table(runs, grew)
    largest = runs[-1]
    peak = max(fig["peak_mb"] for fig in largest["stages"].values())
    verdicts = {
        "peak_mb_at_largest": peak, "target_peak_mb": TARGET_PEAK_MB, "peak_holds": peak < TARGET_PEAK_MB,
        "total_seconds_at_largest": largest["total_seconds"], "target_total_seconds": TARGET_TOTAL_S,
        "total_holds": largest["total_seconds"] < TARGET_TOTAL_S,
        "stages_faster_than_nlogn": sorted(s for s, g in (grew or {}).items() if not g["holds"]),
    }
    print(f"\nlargest N={largest['n']}: peak {peak:.0f} MB (target < {TARGET_PEAK_MB}), whole run "
          f"{largest['total_seconds']:.0f} s (target < {TARGET_TOTAL_S}), {args.threads} threads, "
          f"load average {largest['load_average'][0]:.2f}")
    return report("scale", {"threads": args.threads, "runs": runs, "growth": grew, **verdicts})

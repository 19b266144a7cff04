"""The whole demo: wall time of ``snakemake --cores 2`` from nothing, and where it goes per rule.

Runs the real Snakefile with the default config in a fresh temporary
directory (so nothing is reused), then sums each rule's ``benchmark:`` files.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from .common import report

REPO = Path(__file__).resolve().parents[1]


def rule_times(workdir: Path) -> dict:
    """Seconds per rule, summed over its jobs, from the benchmark TSVs (benchmarks/<rule>[/...].tsv)."""
    times: dict[str, float] = {}
    for tsv in (workdir / "benchmarks").rglob("*.tsv"):
        rel = tsv.relative_to(workdir / "benchmarks")
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        times[rule] = times.get(rule, 0.0) + float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
    return dict(sorted(times.items(), key=lambda kv: -kv[1]))


def main(cores: int = 2) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(REPO / "config/config.yaml"), "--cores", str(cores), "--quiet"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        per_rule = rule_times(workdir)
        comparison = pd.read_csv(workdir / "results/evaluation/comparison.csv")
    # Each ensemble's test macro F1 [95% interval] beside the no-skill line: the learning goal.
    scores = {row.ensemble: {"test": row.test_macro_f1, "interval": [row.test_low, row.test_high],
                             "no_skill": row.test_no_skill, "honest": row.honest_macro_f1}
              for row in comparison.itertuples()}
    return report("demo", {
        "cores": cores, "wall_seconds": round(wall, 1), "target_seconds": 300,
        "rule_seconds": {k: round(v, 1) for k, v in per_rule.items()},
        "jobs_seconds_total": round(sum(per_rule.values()), 1),
        "scores": scores,
        "best_test_over_no_skill": round(max(v["test"] / v["no_skill"] for v in scores.values()), 2),
    })


if __name__ == "__main__":
    main()

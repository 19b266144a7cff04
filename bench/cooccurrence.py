"""Time the label analysis on the real labels (Kaggle train + HPAv18 list) and print its findings.

    python -m bench cooccurrence [train.csv] [HPAv18RBGY_wodpl.csv]

Defaults to ../shared/data/hpa/ (skipped when absent). Uses config/hpa.yaml's analysis settings, the same calls as
rules count_labels, mine_labels, class_groups and sampling_weights
(minus the CSV writing), timed in-process so interpreter start-up is excluded.
"""

import sys
import time
from pathlib import Path

import yaml

from hpa.classes import HPA
from hpa.labels import cooccurrence as co

from .common import report

REPO = Path(__file__).resolve().parents[1]
SHARED_HPA = REPO.parent / "shared" / "data" / "hpa"


def main(train=SHARED_HPA / "train.csv", external=SHARED_HPA / "HPAv18RBGY_wodpl.csv") -> dict | None:
    if not (Path(train).exists() and Path(external).exists()):
        print(f"[cooccurrence] skipped: {train} or {external} not present")
        return None
    settings = yaml.safe_load((REPO / "config/hpa.yaml").read_text())["analysis"]
    mining = {k: settings[k] for k in ("algorithm", "min_support", "max_len", "min_confidence")}
    clock = time.perf_counter()
    labels = co.read_label_sources({"kaggle": train, "external": external}, HPA.n_classes)
    read = time.perf_counter() - clock
    tables, timings = {}, {}
    for subset in ("all", "kaggle", "external"):
        part = labels if subset == "all" else labels[labels["source"] == subset]
        start = time.perf_counter()
        tables[subset] = {**co.cooccurrence_tables(part, HPA.classes), **co.mining_tables(part, HPA.classes, **mining)}
        timings[subset] = time.perf_counter() - start
    start = time.perf_counter()
    counts = co.matrix_values(tables["all"]["cooccurrence_counts"])
    groups = co.class_groups(counts, settings["n_groups"], settings["group_method"], HPA.classes)
    co.sampling_weights(counts.diagonal(), len(labels), HPA.classes, power=settings["weight_power"], cap=settings["weight_cap"])
    grouping = time.perf_counter() - start
    total = time.perf_counter() - clock

    print(f"{len(labels):,} label sets ({(labels['source'] == 'kaggle').sum():,} Kaggle + "
          f"{(labels['source'] == 'external').sum():,} HPAv18), {mining}")
    print(f"read + validate {read:.2f} s; itemsets, rules, matrices: all {timings['all']:.2f} s, "
          f"kaggle {timings['kaggle']:.2f} s, external {timings['external']:.2f} s; "
          f"groups + weights {grouping:.2f} s; total {total:.2f} s "
          f"({len(labels) / total:,.0f} label sets/s)")
    itemsets, rules = tables["all"]["itemsets"], tables["all"]["rules"]
    print(f"\n{len(itemsets)} frequent itemsets, {len(rules)} rules. Top pairs:")
    for row in itemsets[itemsets["length"] == 2].head(10).itertuples():
        print(f"  {row.count:6,}  ({row.support:.3f})  {row.names}")
    print("\nStrongest rules by lift:")
    for row in rules.head(10).itertuples():
        print(f"  {row.antecedent_names} -> {row.consequent_names}: lift {row.lift:.1f}, "
              f"confidence {row.confidence:.2f}, {row.count:,} images")
    print(f"\n{groups['n_groups']} groups ({groups['method']}):")
    for group in groups["groups"]:
        print(f"  {group['name']}: {', '.join(f'{k} {n}' for k, n in zip(group['classes'], group['names']))}")
    return report("cooccurrence", {
        "label_sets": len(labels), "read_seconds": round(read, 3), "analysis_seconds_all": round(timings["all"], 3),
        "groups_and_weights_seconds": round(grouping, 3), "total_seconds": round(total, 3),
        "itemsets": len(itemsets), "rules": len(rules),
    })


if __name__ == "__main__":
    main(*sys.argv[1:])

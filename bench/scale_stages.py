"""The scale run's stages: the library calls of each rule's script, one stage per process.

    python -m bench.scale_stages STAGE ROOT THREADS

runs one stage on the generated data under ROOT (``bench.scale_layout.Layout``)
and prints one JSON line: the stage's wall and CPU seconds (imports excluded)
and the process's peak resident memory. A fresh interpreter per stage makes the peak
that stage's own: ``VmHWM`` is the high-water mark of this process's memory
since it started, and worker processes (the cache build's) are reported apart.
Settings come from ``config/hpa.yaml``, the real recipe.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from .scale_layout import REPO, SIZE, Layout, embedding_paths, member_paths

# Each stage imports what its rule's script imports, inside the stage: a process then holds
# that stage's modules only, and its peak memory is the stage's own. ``main`` imports the
# stage's modules (STAGES) before it starts the clock.

CONFIG = yaml.safe_load((REPO / "config/hpa.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def external_settings() -> dict:
    """config/hpa.yaml's ``external:`` with the schema's defaults for the keys it leaves out."""
    properties = SCHEMA["properties"]["external"]["properties"]
    return {k: v["default"] for k, v in properties.items() if "default" in v} | CONFIG["external"]


def label_paths(d: Layout) -> dict[str, Path]:
    return {"kaggle": d.kaggle / "train.csv", "external": d.external / "list.csv"}


def hash_images(d: Layout, threads: int) -> None:
    from hpa.external.dedup import hash_source
    from hpa.files import write_csv
    write_csv(hash_source(d.kaggle, CONFIG["external"]["dedup"]["hash"], workers=2 * threads),
              d.results / "source_hashes.csv")


def clean_external(d: Layout, threads: int) -> None:
    from hpa.external.clean import clean, read_download, settings_from_config, write_result
    from hpa.external.download import read_list
    result = clean(read_download(d.external / "download.csv"), read_list(d.external / "list.csv"),
                   read_download(d.results / "source_hashes.csv"),
                   settings_from_config(external_settings(), workers=threads),
                   max_rejected_fraction=CONFIG["data"]["max_rejected_fraction"])
    output = SimpleNamespace(**{name: d.results / "external" / f"{name}.csv"
                                for name in ("kept", "table", "duplicates", "leaks")})
    write_result(result, SimpleNamespace(**vars(output), report=d.results / "external" / "report.json"),
                 image_dir=d.external / "images")


def ingest_images(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.data.ingest import ingest
    from hpa.files import write_csv
    manifest, rejected = ingest(d.kaggle, "kaggle", vocab=HPA, workers=4 * threads,
                                max_rejected_fraction=CONFIG["data"]["max_rejected_fraction"],
                                external_csv=d.results / "external" / "kept.csv")
    write_csv(rejected, d.results / "rejected.csv")
    write_csv(manifest, d.results / "manifest.csv")


def count_labels(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.files import write_csv
    from hpa.labels import cooccurrence as co
    labels = co.read_label_sources(label_paths(d), HPA.n_classes)
    write_csv(co.class_counts_table(labels, list(label_paths(d)), HPA.classes), d.results / "analysis" / "class_counts.csv")
    for subset, part in co.subsets(labels).items():
        for name, table in co.cooccurrence_tables(part, HPA.classes).items():
            write_csv(table, d.results / "analysis" / subset / f"{name}.csv")


def mine_labels(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.files import write_csv
    from hpa.labels import cooccurrence as co
    labels = co.read_label_sources(label_paths(d), HPA.n_classes)
    mining = {k: CONFIG["analysis"][k] for k in ("algorithm", "min_support", "max_len", "min_confidence")}
    for subset, part in co.subsets(labels).items():
        for name, table in co.mining_tables(part, HPA.classes, **mining).items():
            write_csv(table, d.results / "analysis" / subset / f"{name}.csv")


def class_groups(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.labels import cooccurrence as co
    counts = co.read_matrix(d.results / "analysis" / "all" / "cooccurrence_counts.csv")
    analysis = CONFIG["analysis"]
    co.write_yaml(co.class_groups(counts, analysis["n_groups"], analysis["group_method"], HPA.classes),
                  d.results / "analysis" / "class_groups.yaml")


def sampling_weights(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.files import write_csv
    from hpa.labels import cooccurrence as co
    labels = co.read_label_sources(label_paths(d), HPA.n_classes)
    analysis = CONFIG["analysis"]
    weights = co.sampling_weights(co.label_matrix(labels, HPA.n_classes).sum(axis=0), len(labels), HPA.classes,
                                  power=analysis["weight_power"], cap=analysis["weight_cap"])
    write_csv(weights, d.results / "analysis" / "sampling_weights.csv")


def folds(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.data.folds import make_folds, read_groups
    from hpa.files import write_csv
    from hpa.tables import read_manifest
    table = make_folds(read_manifest(d.results / "manifest.csv", split="train"), n_folds=CONFIG["folds"]["n"],
                       seed=CONFIG["folds"]["seed"], groups=read_groups(d.results / "external" / "duplicates.csv"),
                       n_classes=HPA.n_classes)
    write_csv(table, d.results / "folds.csv")


def cache_split(d: Layout, threads: int, split: str) -> None:
    from hpa.classes import CHANNELS
    from hpa.data.cache import build_cache
    from hpa.data.images import BitDepth
    from hpa.tables import read_manifest
    build_cache(read_manifest(d.results / "manifest.csv", split=split), d.results / "cache" / f"{split}.npy",
                d.results / "cache" / f"{split}.csv", size=SIZE, channels=CHANNELS, workers=threads,
                depth=BitDepth(rule="shift"))


def channel_stats(d: Layout, threads: int) -> None:
    import pandas as pd

    from hpa.classes import CHANNELS
    from hpa.data.cache import write_stats
    write_stats(d.results / "cache" / "train.npy", pd.read_csv(d.results / "cache" / "train.csv"),
                d.results / "cache" / "stats.json", CHANNELS)


def blend(d: Layout, threads: int) -> None:
    from hpa.classes import HPA
    from hpa.files import write_csv, write_json
    from hpa.postprocess.blend import combine
    from hpa.tables import read_manifest
    members = {m: {k: [str(p) for p in paths] for k, paths in kinds.items()} for m, kinds in member_paths(d).items()}
    oof, test, how = combine(members, read_manifest(d.results / "manifest.csv", split="train"), combine_as="mean",
                             classes=HPA.classes)
    write_csv(oof, d.results / "ensemble" / "oof.csv")
    write_csv(test, d.results / "ensemble" / "test.csv")
    write_json(how, d.results / "ensemble" / "how.json")


def thresholds(d: Layout, threads: int) -> None:
    import pandas as pd

    from hpa.classes import HPA
    from hpa.files import write_csv, write_json
    from hpa.postprocess.submission import fit_thresholds
    from hpa.tables import read_manifest
    ens = d.results / "ensemble"
    record, per_class, methods, _ = fit_thresholds(
        pd.read_csv(ens / "oof.csv", dtype={"Id": str}), read_manifest(d.results / "manifest.csv", split="train"),
        pd.read_csv(d.results / "folds.csv", dtype={"Id": str}),
        CONFIG["ensembles"]["resnet34_densenet121"]["threshold"], classes=HPA.classes)
    write_csv(per_class, ens / "per_class.csv")
    write_csv(methods, ens / "threshold_methods.csv")
    write_json(record, ens / "thresholds.json")


def make_submission(d: Layout, threads: int) -> None:
    import pandas as pd

    from hpa.files import read_json, write_csv
    from hpa.postprocess.submission import submission
    from hpa.tables import read_manifest
    test_ids = pd.concat([read_manifest(d.results / "manifest.csv", split="test")["Id"],
                          read_manifest(d.results / "rejected.csv", split="test")["Id"]])
    sub = submission(pd.read_csv(d.results / "ensemble" / "test.csv", dtype={"Id": str}),
                     read_json(d.results / "ensemble" / "thresholds.json"), sorted(test_ids))
    write_csv(sub, d.results / "submission.csv")


def embedding_neighbours(d: Layout, threads: int) -> None:
    from hpa.embedding.neighbours import run_neighbours_job
    run_neighbours_job(embeddings=embedding_paths(d), folds=list(range(len(embedding_paths(d)))),
                       folds_csv=d.results / "folds.csv", manifest_csv=d.results / "manifest.csv",
                       neighbours_csv=d.results / "embedding" / "neighbours.csv")


def embedding_duplicates(d: Layout, threads: int) -> None:
    from hpa.embedding.neighbours import run_duplicates_job
    run_duplicates_job(embeddings=embedding_paths(d), manifest_csv=d.results / "manifest.csv",
                       phash_csv=d.results / "external" / "duplicates.csv",
                       min_similarity=CONFIG["embedding"]["duplicate_similarity"],
                       duplicates_csv=d.results / "embedding" / "duplicates.csv")


# In the order the workflow runs them; the names are the rules'. Each with the modules it imports.
STAGES = {
    "hash_images": (hash_images, ["hpa.external.dedup"]),
    "clean_external": (clean_external, ["hpa.external.clean", "hpa.external.download"]),
    "ingest": (ingest_images, ["hpa.data.ingest"]),
    "count_labels": (count_labels, ["hpa.labels.cooccurrence"]),
    "mine_labels": (mine_labels, ["hpa.labels.cooccurrence"]),
    "class_groups": (class_groups, ["hpa.labels.cooccurrence"]),
    "sampling_weights": (sampling_weights, ["hpa.labels.cooccurrence"]),
    "make_folds": (folds, ["hpa.data.folds"]),
    "cache_images[train]": (lambda d, threads: cache_split(d, threads, "train"), ["hpa.data.cache"]),
    "cache_images[test]": (lambda d, threads: cache_split(d, threads, "test"), ["hpa.data.cache"]),
    "channel_stats": (channel_stats, ["hpa.data.cache"]),
    "blend": (blend, ["hpa.postprocess.blend"]),
    "fit_thresholds": (thresholds, ["hpa.postprocess.submission"]),
    "make_submission": (make_submission, ["hpa.postprocess.submission"]),
    "embedding_neighbours": (embedding_neighbours, ["hpa.embedding.neighbours"]),
    "embedding_duplicates": (embedding_duplicates, ["hpa.embedding.neighbours"]),
}


def peak_mb() -> float:
    """This process's resident high-water mark (VmHWM), which an exec resets, unlike ru_maxrss."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


def cpu_seconds() -> float:
    """CPU time of this process and of the workers it has waited for (the cache build's)."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def main(stage: str, root: str, threads: str) -> None:
    run, modules = STAGES[stage]
    for module in modules:
        importlib.import_module(module)
    start, cpu = time.perf_counter(), cpu_seconds()
    run(Layout(Path(root)), int(threads))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                      "peak_mb": round(peak_mb(), 1), "worker_peak_mb": round(workers, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:])

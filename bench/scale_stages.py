"""The scale run's stages: each rule's own script, run on the generated data, one stage per process.

    python -m bench.scale_stages STAGE ROOT THREADS

runs one stage on the generated data under ROOT (``bench.scale_layout.Layout``)
and prints one JSON line: the stage's wall and CPU seconds (imports excluded)
and the process's peak resident memory. A fresh interpreter per stage makes the peak
that stage's own: ``VmHWM`` is the high-water mark of this process's memory
since it started, and worker processes (the cache build's) are reported apart.

Each stage executes its rule's script file (``workflow/scripts/<rule>.py``) with a stand-in
``snakemake`` object: the rule's named inputs, outputs, params and log (``JOBS``), params
from ``config/hpa.yaml`` (the real recipe) with the schema's defaults, as the rule computes
them. The bench so measures the scripts the workflow runs, not a copy of their library calls
that drifts from them; tests/test_bench.py checks JOBS's names against the rules' as
Snakemake parses them, and a script reading a name the stand-in lacks fails the stage.
"""

from __future__ import annotations

import importlib
import json
import resource
import runpy
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import yaml

from .scale_layout import MODELS, REPO, SIZE, Layout, embedding_paths, member_paths

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SCRIPTS = REPO / "workflow" / "scripts"
ENSEMBLE = "resnet34_densenet121"


def with_defaults(given: dict, schema: dict) -> dict:
    """``given`` with the schema's defaults filled in, object by object, as Snakemake's validate() does."""
    out = dict(given)
    for key, prop in schema.get("properties", {}).items():
        if key not in out and "default" in prop:
            out[key] = prop["default"]
        if isinstance(out.get(key), dict) and "properties" in prop:
            out[key] = with_defaults(out[key], prop)
    return out


CONFIG = with_defaults(yaml.safe_load((REPO / "config/hpa.yaml").read_text()), SCHEMA)
# common.smk's ENSEMBLES: an ensembles: entry with its schema defaults (a map of user-chosen keys).
ENSEMBLES = {name: with_defaults(e, SCHEMA["$defs"]["ensemble"]) for name, e in CONFIG["ensembles"].items()}
DATA, ANALYSIS, EXTERNAL = CONFIG["data"], CONFIG["analysis"], CONFIG["external"]


def label_columns() -> dict:
    return {k: CONFIG["kaggle"][k] for k in ("id_column", "target_column")}


def source_files(d: Layout) -> dict:
    """common.smk's source_files() for the generated Kaggle layout (PNG folders: no full-size TIFFs)."""
    return {"train_csv": d.kaggle / "train.csv", "sample_submission": d.kaggle / "sample_submission.csv",
            "train_images": d.kaggle / "train", "test_images": d.kaggle / "test"}


def label_sources(d: Layout) -> dict:
    """The analysis rules' label sources: the source's canonical labels (the generated train.csv is
    canonical already, so the labels rule is left out) and the external list."""
    return {"kaggle": d.kaggle / "train.csv", "external": d.external / "list.csv"}


def analysis_tables(d: Layout, names) -> dict:
    tables = {name: d.results / "analysis" / f"{name}.csv" for name in names}
    for source in label_sources(d):
        tables |= {f"{name}_{source}": d.results / "analysis" / "sources" / source / f"{name}.csv" for name in names}
    return tables


def job(rule: str, input: dict, output: dict, params: dict | None = None, log: dict | None = None,
        wildcards: dict | None = None) -> dict:
    return {"rule": rule, "input": input, "output": output, "params": params or {},
            "log": log or {"": Path("logs") / f"{rule}.log"}, "wildcards": wildcards or {}}


def jobs(d: Layout) -> dict[str, dict]:
    """Per stage, in the order the workflow runs them: its rule, and the rule's named input, output,
    params (the rule's expressions over CONFIG) and wildcards, on the generated data's paths."""
    r, vocabulary, bit_depth = d.results, d.results / "vocabulary.json", d.results / "cache" / "bit_depth.json"
    labels, dedup = label_sources(d), EXTERNAL["dedup"]
    ens = ENSEMBLES[ENSEMBLE]
    assert tuple(ens["models"]) == MODELS, f"the generated probabilities are {MODELS}'s, {ENSEMBLE} has {ens['models']}"
    cache = {split: job("cache_images", {"manifest": r / "manifest.csv", "vocabulary": vocabulary,
                                         "bit_depth": bit_depth},
                        {"npy": r / "cache" / f"{split}.npy", "index": r / "cache" / f"{split}.csv",
                         "clipped": r / "clipped" / f"{split}.csv"},
                        # The generated images are SIZE px: the cache keeps them so (the recipe's cache_size
                        # would upsample 32 px planes, measuring the resize rather than the stage).
                        {"size": SIZE, "fit": DATA["fit"], "clipping": DATA["clipping"],
                         "max_rejected_fraction": DATA["max_rejected_fraction"]},
                        wildcards={"split": split}) for split in ("train", "test")}
    table = {
        "vocabulary": job("vocabulary", {}, {"": vocabulary}, {"vocabulary": vocabulary_json()}),
        "bit_depth": job("bit_depth", {"images": d.kaggle / "train", "vocabulary": vocabulary},
                         {"bit_depth": bit_depth}, {"bit_depth": DATA["bit_depth"]}),
        "hash_images": job("hash_images", source_files(d) | {"bit_depth": bit_depth},
                           {"hashes": r / "source_hashes.csv", "clipped": r / "clipped" / "hashed.csv"},
                           label_columns() | {"hash": dedup["hash"], "full_size": False, "clipping": DATA["clipping"],
                                              "max_rejected_fraction": DATA["max_rejected_fraction"]}),
        "clean_external": job("clean_external", {"records": d.external / "download.csv", "list": labels["external"],
                                                 "source": r / "source_hashes.csv"},
                              {name: r / "external" / f"{name}.csv" for name in ("kept", "table", "duplicates", "leaks")}
                              | {"report": r / "external" / "report.json"},
                              {"external": {k: EXTERNAL[k] for k in ("dedup", "blank_std")},
                               "max_rejected_fraction": DATA["max_rejected_fraction"],
                               "image_dir": d.external / "images"}),
        "ingest": job("ingest", source_files(d) | {"kept": r / "external" / "kept.csv", "vocabulary": vocabulary},
                      {"manifest": r / "manifest.csv", "rejected": r / "rejected.csv"},
                      label_columns() | {"source": "kaggle", "max_rejected_fraction": DATA["max_rejected_fraction"],
                                         "full_size": False},
                      log={"log": Path("logs") / "ingest.log", "rejected": Path("logs") / "ingest_rejected.csv"}),
        "count_labels": job("count_labels", labels | {"vocabulary": vocabulary},
                            analysis_tables(d, ("cooccurrence_counts", "cooccurrence_conditional"))
                            | {"class_counts": r / "analysis" / "class_counts.csv"}, {"sources": list(labels)}),
        "mine_labels": job("mine_labels", labels | {"vocabulary": vocabulary}, analysis_tables(d, ("itemsets", "rules")),
                           {"sources": list(labels), "mining": {k: ANALYSIS[k] for k in
                                                                ("algorithm", "min_support", "max_len", "min_confidence")}}),
        "class_groups": job("class_groups", {"counts": r / "analysis" / "cooccurrence_counts.csv",
                                             "vocabulary": vocabulary}, {"groups": r / "analysis" / "class_groups.yaml"},
                            {"n_groups": ANALYSIS["n_groups"], "method": ANALYSIS["group_method"]}),
        "sampling_weights": job("sampling_weights", labels | {"vocabulary": vocabulary},
                                {"weights": r / "analysis" / "sampling_weights.csv"},
                                {"sources": list(labels), "power": ANALYSIS["weight_power"], "cap": ANALYSIS["weight_cap"]}),
        "cache_images[train]": cache["train"],
        "cache_images[test]": cache["test"],
        "source_duplicates": job("source_duplicates", {f"{split}_{kind}": cache[split]["output"][kind]
                                                       for split in ("train", "test") for kind in ("npy", "index")}
                                 | {"hashes": r / "source_hashes.csv"},
                                 {"leaks": r / "data" / "leaks.csv", "duplicates": r / "data" / "duplicates.csv"},
                                 {"max_distance": dedup["max_distance"], "hash": dedup["hash"],
                                  "channels": dedup["channels"]}),
        "make_folds": job("make_folds", {"duplicates": r / "external" / "duplicates.csv",
                                         "source_duplicates": r / "data" / "duplicates.csv",
                                         "manifest": r / "manifest.csv", "vocabulary": vocabulary},
                          {"folds": r / "folds.csv"}, {"n_folds": CONFIG["folds"]["n"], "seed": CONFIG["folds"]["seed"]}),
        "channel_stats": job("channel_stats", {"npy": r / "cache" / "train.npy", "index": r / "cache" / "train.csv",
                                               "vocabulary": vocabulary}, {"stats": r / "cache" / "stats.json"}),
        "blend": job("blend", {f"{kind}_{m}": paths[kind] for m, paths in member_paths(d).items() for kind in paths}
                     | {"manifest": r / "manifest.csv", "groups": [], "vocabulary": vocabulary},
                     {k: r / "ensemble" / f"{k}.csv" for k in ("oof", "test")} | {"how": r / "ensemble" / "how.json"},
                     {"ensemble": {k: ens[k] for k in ("models", "combine", "weights", "groups")}},
                     wildcards={"ensemble": ENSEMBLE}),
        "fit_thresholds": job("fit_thresholds", {"oof": r / "ensemble" / "oof.csv", "manifest": r / "manifest.csv",
                                                 "folds": r / "folds.csv", "vocabulary": vocabulary},
                              {"thresholds": r / "ensemble" / "thresholds.json",
                               "per_class": r / "ensemble" / "per_class.csv",
                               "methods": r / "ensemble" / "threshold_methods.csv",
                               "predictions": r / "ensemble" / "oof_predictions.csv"},
                              {"ensemble": ens}, wildcards={"ensemble": ENSEMBLE}),
        "make_submission": job("make_submission", {"test": r / "ensemble" / "test.csv",
                                                   "thresholds": r / "ensemble" / "thresholds.json",
                                                   "manifest": r / "manifest.csv", "rejected": r / "rejected.csv",
                                                   "test_labels": [], "vocabulary": vocabulary},
                               {"submission": r / "submission.csv", "predictions": r / "ensemble" / "test_predictions.csv"},
                               wildcards={"ensemble": ENSEMBLE}),
        "embedding_neighbours": job("embedding_neighbours", {"embeddings": embedding_paths(d), "folds": r / "folds.csv",
                                                             "manifest": r / "manifest.csv"},
                                    {"neighbours": r / "embedding" / "neighbours.csv"},
                                    {"folds": list(range(len(embedding_paths(d))))}),
        "embedding_duplicates": job("embedding_duplicates", {"duplicates": r / "external" / "duplicates.csv",
                                                             "embeddings": embedding_paths(d),
                                                             "manifest": r / "manifest.csv"},
                                    {"duplicates": r / "embedding" / "duplicates.csv"},
                                    {"min_similarity": CONFIG["embedding"]["duplicate_similarity"]}),
    }
    for spec in table.values():  # logs under the run's folder, as a rule's are under the workdir
        spec["log"] = {k: d.root / v for k, v in spec["log"].items()}
    return table


def vocabulary_json() -> dict:
    """common.smk's VOCAB.to_json(): the recipe's classes and channels."""
    from hpa.classes import Vocabulary
    return Vocabulary.from_config(CONFIG, base=REPO).to_json()


# The stage names, in the order the workflow runs them (a rule's, with its wildcard where it has one).
STAGES = list(jobs(Layout(Path("."))))


class Names(list):
    """A stand-in for snakemake.io's Namedlist: the values in order, each name an attribute and a key.

    A name the rule does not declare raises (AttributeError, KeyError), so a script reading a new
    input or param fails the stage rather than the bench running something else.
    """

    def __init__(self, named: dict):
        super().__init__(named.values())
        self._names = dict(named)
        self.__dict__.update(named)  # as Namedlist: a name wins over a list method (``index``)

    def __getattr__(self, name: str):
        try:
            return self.__dict__["_names"][name]
        except KeyError:
            raise AttributeError(f"the scale bench's job declares no {name!r} (bench/scale_stages.py: jobs)") from None

    def __getitem__(self, key):
        return self._names[key] if isinstance(key, str) else super().__getitem__(key)

    def get(self, name: str, default=None):
        return self._names.get(name, default)

    def keys(self):
        return self._names.keys()

    def items(self):
        return self._names.items()


def as_text(value):
    """Paths as the strings Snakemake hands a script; lists element-wise, other values as they are."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [as_text(v) for v in value]
    return value


def stand_in(spec: dict, threads: int) -> SimpleNamespace:
    """The ``snakemake`` object of the stage's job, its output and log folders made (as Snakemake does)."""
    for path in [*spec["output"].values(), *spec["log"].values()]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    named = {part: Names({k: as_text(v) for k, v in spec[part].items()})
             for part in ("input", "output", "params", "log", "wildcards")}
    return SimpleNamespace(**named, threads=threads, config=CONFIG, rule=spec["rule"])


def script(spec: dict) -> Path:
    return SCRIPTS / f"{spec['rule']}.py"


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


def script_imports(path: Path) -> list[str]:
    """The modules a script's top-level ``from X import``/``import X`` lines name, to import before the clock."""
    modules = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("from", "import") and not line.startswith(" "):
            modules.append(words[1].rstrip(","))
    return [m for m in modules if m != "__future__"]


def main(stage: str, root: str, threads: str) -> None:
    spec = jobs(Layout(Path(root)))[stage]
    path = script(spec)
    for module in script_imports(path):
        importlib.import_module(module)
    snakemake = stand_in(spec, int(threads))
    start, cpu = time.perf_counter(), cpu_seconds()
    runpy.run_path(str(path), init_globals={"snakemake": snakemake}, run_name="__main__")
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"stage": stage, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                      "peak_mb": round(peak_mb(), 1), "worker_peak_mb": round(workers, 1)}))


if __name__ == "__main__":
    main(*sys.argv[1:])

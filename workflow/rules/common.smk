# Config validation, defaults and input functions. No rules here.

import os

import yaml
from snakemake.utils import validate


SCHEMA_PATH = workflow.source_path("../schemas/config.schema.yaml")
validate(config, schema=SCHEMA_PATH)

with open(SCHEMA_PATH) as fh:
    SCHEMA = yaml.safe_load(fh)


def with_defaults(entry, definition):
    """Fill an entry of models: or ensembles: with its schema defaults.

    Snakemake's validate() fills defaults only for fixed keys; these maps have
    user-chosen keys, so their defaults are filled here, from the same schema.
    """
    props = SCHEMA["$defs"][definition]["properties"]
    filled = {k: p["default"] for k, p in props.items() if "default" in p}
    filled.update(entry)
    return filled


MODELS = {name: with_defaults(m, "model") for name, m in config["models"].items()}
ENSEMBLES = {name: with_defaults(e, "ensemble") for name, e in config["ensembles"].items()}
FOLDS = list(range(config["folds"]["n"]))

for _name, _ens in ENSEMBLES.items():
    _unknown = [m for m in _ens["models"] if m not in MODELS]
    if _unknown:
        raise ValueError(
            f"ensembles.{_name}.models names {_unknown}, which are not under models: "
            f"(known: {sorted(MODELS)}); add them there or fix the name"
        )


wildcard_constraints:
    model="|".join(MODELS),
    ensemble="|".join(ENSEMBLES),
    fold=r"\d+",
    split="train|test",
    tta="none|flips|dihedral",
    aggregate="mean|max",


def source_dir():
    """The Kaggle-layout folder the run reads: the generated demo or the real data."""
    return config["demo"]["dir"] if config["source"] == "demo" else config["kaggle"]["dir"]


def source_files():
    """Label files of the source: produced by make_demo, or put in place by the user."""
    d = source_dir()
    return {"train_csv": f"{d}/train.csv", "sample_submission": f"{d}/sample_submission.csv"}


def ensemble_predictions(kind):
    """Per-model lists of the fold prediction tables an ensemble blends."""

    def inner(wildcards):
        ens = ENSEMBLES[wildcards.ensemble]
        return {
            m: [f"results/predictions/{m}/fold{k}/{ens['tta']}_{ens['aggregate']}/{kind}.csv" for k in FOLDS]
            for m in ens["models"]
        }

    return inner


def flat(per_model):
    """Flatten an input function's {model: [paths]} into one list of paths."""

    def inner(wildcards):
        return [p for paths in per_model(wildcards).values() for p in paths]

    return inner


def all_outputs():
    targets = expand("results/submission/{ensemble}.csv", ensemble=ENSEMBLES)
    if config["source"] == "demo":
        targets += expand("results/evaluation/{ensemble}.json", ensemble=ENSEMBLES)
    return targets

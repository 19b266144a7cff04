# Config validation, defaults and input functions. No rules here.

import copy

import yaml
from snakemake.utils import validate

SCHEMA_PATH = workflow.source_path("../schemas/config.schema.yaml")
GIVEN = copy.deepcopy(config)  # as the user wrote it: validate() fills in the defaults
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


# A key that only matters beside another one: (section, key) -> (key that reads it, values it
# reads it at). Given alone it would be silently ignored, so it is refused by name instead.
DEPENDENT_KEYS = {
    ("models", "se_reduction"): ("head", ["gapnet"]),
    ("ensembles", "weights"): ("combine", ["weighted"]),
    ("ensembles", "groups"): ("combine", ["groups"]),
    ("ensembles", "transfer_mode"): ("transfer", [True]),
    ("ensembles", "transfer_weight"): ("transfer", [True]),
}


def check_dependent_keys(section, entries, definition):
    for name, entry in entries.items():
        filled = with_defaults(entry, definition)
        for (where, key), (needs, values) in DEPENDENT_KEYS.items():
            if where == section and key in entry and filled[needs] not in values:
                raise ValueError(
                    f"{section}.{name}.{key} only applies with {needs}: {values[0]} (it has {needs}: "
                    f"{filled[needs]}); set {needs}: {values[0]} or remove {key}"
                )


check_dependent_keys("models", GIVEN["models"], "model")
check_dependent_keys("ensembles", GIVEN["ensembles"], "ensemble")
# Model keys that change how fast a model trains, not what it learns (x-runtime-only in the
# schema): train's params leave them out, so that switching one reruns no training job.
RUNTIME_KEYS = [k for k, p in SCHEMA["$defs"]["model"]["properties"].items() if p.get("x-runtime-only")]
MODELS = {name: with_defaults(m, "model") for name, m in config["models"].items()}
ENSEMBLES = {name: with_defaults(e, "ensemble") for name, e in config["ensembles"].items()}
FOLDS = list(range(config["folds"]["n"]))

if config["data"]["cache_size"] is not None and config["data"]["cache_size"] < config["data"]["image_size"]:
    raise ValueError(
        f"data.cache_size {config['data']['cache_size']} is below data.image_size {config['data']['image_size']}: "
        "the models take image_size crops of the cached images; raise cache_size or set it to null"
    )

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
    """Label files and image folders of the source: produced by make_demo, or put in place by the user."""
    d = source_dir()
    # Kaggle's full-size TIFFs sit in train_full_size/ and test_full_size/ (kaggle.full_size).
    suffix = "_full_size" if config["source"] == "kaggle" and config["kaggle"]["full_size"] else ""
    return {
        "train_csv": f"{d}/train.csv",
        "sample_submission": f"{d}/sample_submission.csv",
        "train_images": f"{d}/train{suffix}",
        "test_images": f"{d}/test{suffix}",
    }


def external_inputs(*names):
    """Outputs of clean_external a rule reads when external.use is on (none when off)."""
    if not config["external"]["use"]:
        return {}
    return {name: f"results/external/{name}.csv" for name in names}


def label_sources():
    """Labels CSV per source for the analysis: the training labels, plus the external list (as listed) when used."""
    sources = {config["source"]: source_files()["train_csv"]}
    external = config.get("external", {})
    if external.get("use", False):
        sources["external"] = external["list"]
    return sources


def analysis_tables(names):
    """Named outputs of a label-analysis rule: each table of all labels together, as "{name}",
    and of each source's labels, as "{name}_{source}" (the key the rule's script writes to)."""
    tables = {name: f"results/analysis/{name}.csv" for name in names}
    if "rules" in tables:
        tables["rules"] = report(tables["rules"], caption="../report/rules.rst", category="Labels")
    for source in label_sources():
        tables |= {f"{name}_{source}": f"results/analysis/sources/{source}/{name}.csv" for name in names}
    return tables


def sampling_weights(wildcards):
    """Class weights of the co-occurrence stage, for models that oversample rare classes."""
    if MODELS[wildcards.model]["oversample"]:
        return "results/analysis/sampling_weights.csv"
    return []


def model_tta(wildcards):
    """The TTA settings (sorted names) of the ensembles that use a model: its predict job runs their views."""
    return sorted({ens["tta"] for ens in ENSEMBLES.values() if wildcards.model in ens["models"]})


def member_predictions(wildcards):
    """Named inputs of blend: "{kind}_{model}" (kind oof or test) -> that member's per-fold tables."""
    ens = ENSEMBLES[wildcards.ensemble]
    view = f"{ens['tta']}_{ens['aggregate']}"
    return {
        f"{kind}_{m}": [f"results/predictions/{m}/fold{k}/{view}/{kind}.csv" for k in FOLDS]
        for m in ens["models"]
        for kind in ("oof", "test")
    }


def ensemble_table(kind):
    """Input function: an ensemble's ``kind`` (oof or test) probabilities, label-transferred when ``transfer`` is on."""

    def inner(wildcards):
        transferred = "transfer/" if ENSEMBLES[wildcards.ensemble]["transfer"] else ""
        return f"results/ensembles/{wildcards.ensemble}/{transferred}{kind}.csv"

    return inner


def new_image_checkpoints(wildcards):
    """Input function of predict_new: the ensemble's checkpoints, model by model in its order.

    A label-transferring ensemble is refused: predict_new would need the new images'
    embeddings and a neighbour search among the training images, and the ensemble's
    thresholds were fitted on transferred probabilities, not on untransferred ones.
    """
    ens = ENSEMBLES[wildcards.ensemble]
    if ens["transfer"]:
        raise ValueError(
            f"predict_new: ensembles.{wildcards.ensemble} has transfer: true, which predict_new does not "
            "apply to new images, and its thresholds were fitted on transferred probabilities; predict "
            "with an ensemble of the same models and transfer: false (add one under ensembles:)"
        )
    return [f"results/models/{m}/fold{k}/model.pt" for m in ens["models"] for k in FOLDS]


def class_groups(wildcards):
    """The co-occurrence stage's class groups, for ensembles that combine by them (not a preset or lists)."""
    ens = ENSEMBLES[wildcards.ensemble]
    if ens["combine"] == "groups" and ens["groups"] == "cooccurrence":
        return "results/analysis/class_groups.yaml"
    return []


def ensemble_benchmarks(wildcards):
    """Named inputs of compare_ensembles: "{kind}_tsv_{ensemble}" (kind train or predict) -> the
    benchmark files of the jobs an ensemble needs, so that their seconds add up to its cost."""
    tables = {}
    for name, ens in ENSEMBLES.items():
        train = [f"benchmarks/train/{m}/fold{k}.tsv" for m in ens["models"] for k in FOLDS]
        predict = [f"benchmarks/predict/{m}/fold{k}.tsv" for m in ens["models"] for k in FOLDS]
        if ens["transfer"]:  # the embedding's jobs count toward the label-transferring ensembles
            train += [f"benchmarks/train_embedding/fold{k}.tsv" for k in FOLDS]
            predict += [f"benchmarks/embed/fold{k}.tsv" for k in FOLDS]
        tables |= {f"train_tsv_{name}": train, f"predict_tsv_{name}": predict}
    return tables


def all_outputs():
    targets = expand("results/submission/{ensemble}.csv", ensemble=ENSEMBLES)
    targets += expand(
        "results/analysis/{name}",
        name=[
            "itemsets.csv",
            "rules.csv",
            "class_groups.yaml",
            "sampling_weights.csv",
            "cooccurrence_heatmap.png",
            "class_frequency.png",
        ],
    )
    targets += expand(
        "results/metrics/{ensemble}/{name}.png", ensemble=ENSEMBLES, name=["threshold_curves", "per_class_f1"]
    )
    targets += expand("results/models/{model}/curves.png", model=MODELS)
    targets.append("results/evaluation/comparison.csv")
    if any(e["transfer"] for e in ENSEMBLES.values()):
        targets.append("results/embedding/duplicates.csv")  # the embeddings exist anyway
    if config["source"] == "demo":
        targets += expand("results/evaluation/{ensemble}.json", ensemble=ENSEMBLES)
    return targets

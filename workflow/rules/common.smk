# Config validation, defaults and input functions. No rules here.

import copy
import re
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow/scripts"))  # hpa, also without pip install -e
from hpa.classes import Vocabulary
from hpa.config.checks import SEARCH_KEYS, cell_settings, check_config, schema_defaults, schema_properties
from hpa.config.errors import ConfigError, ConfigSources, explain
from hpa.data.samples import check_sheet, read_sheet

SCHEMA_PATH = workflow.source_path("../schemas/config.schema.yaml")
with open(SCHEMA_PATH) as fh:
    SCHEMA = yaml.safe_load(fh)

# The config in force came from these files (the demo's, or those --configfile gave, see the
# Snakefile) and the --config pairs: an error names the one that set the bad value.
CONFIG_SOURCES = ConfigSources(
    files=[str(f) for f in workflow.overwrite_configfiles or workflow.configfiles],
    overrides=dict(workflow.config_settings.config),
)


def checked(check, *args, **kwargs):
    """Run a config check; a mistake it finds stops the run in a few lines naming the key, what
    is allowed and the file (hpa.config.errors), not with a schema dump or a traceback."""
    try:
        return check(*args, **kwargs)
    except (WorkflowError, ValueError) as error:
        raise ConfigError(explain(error, SCHEMA, CONFIG_SOURCES)) from None


GIVEN = copy.deepcopy(config)  # as the user wrote it: validate() fills in the defaults
checked(validate, config, schema=SCHEMA_PATH)


def with_defaults(entry, definition):
    """Fill an entry of models: or ensembles: with its schema defaults.

    Snakemake's validate() fills defaults only for fixed keys; these maps have
    user-chosen keys, so their defaults are filled here, from the same schema.
    """
    return schema_defaults(SCHEMA, definition) | entry


# Model keys that change how fast a model trains, not what it learns (x-runtime-only in the
# schema): train's params leave them out, so that switching one reruns no training job.
RUNTIME_KEYS = [k for k, p in schema_properties(SCHEMA, SCHEMA["$defs"]["model"]).items() if p.get("x-runtime-only")]
MODELS = {name: with_defaults(m, "model") for name, m in config["models"].items()}
ENSEMBLES = {name: with_defaults(e, "ensemble") for name, e in config["ensembles"].items()}
FOLDS = list(range(config["folds"]["n"]))
# The classes and channels (config labels: and channels:), checked now; the vocabulary rule
# writes them to VOCABULARY, an input of every rule that counts classes or channels.
VOCAB = checked(Vocabulary.from_config, config)
VOCABULARY = "results/data/vocabulary.json"

# Every model and the embedding built as their jobs build them, the settings they would ignore
# refused by name, and the class groups checked against VOCAB's classes: now rather than when a
# job starts (hpa.config.checks).
for _warning in checked(check_config, GIVEN, config, MODELS, ENSEMBLES, VOCAB):
    logger.warning(f"Config: {_warning}")


def sample_sheet():
    """The sample sheet of source samples, checked as a whole (its columns; its rows, schema included,
    are ingest's, which records a failing row and skips it rather than stopping the run): whether its
    test rows are labelled, which turns the test scoring on."""
    return check_sheet(read_sheet(config["samples"]), config["samples"], VOCAB)


SHEET_TEST_LABELS = checked(sample_sheet) if config["source"] == "samples" else False
# Where, per cell (cells.smk): the stains resolved against the channels, the folders checked.
CELLS, _cell_warnings = checked(cell_settings, config, VOCAB, GIVEN, SCHEMA)
# The cell-level model (cells.model; cell_model.smk), its train: keys filled as a model's.
CELL_MODEL = CELLS["model"] if CELLS else None
for _warning in _cell_warnings:
    logger.warning(f"Config: {_warning}")
# The source's labels in canonical form (rules labels and test_labels): what the label
# analysis and the test scoring read, whatever the source's own spelling.
LABELS = "results/data/labels.csv"
TEST_LABELS = "results/data/test_labels.csv"


wildcard_constraints:
    # Names are plain (the schema's pattern), escaped all the same: a "." must match only itself.
    model="|".join(map(re.escape, MODELS)),
    ensemble="|".join(map(re.escape, ENSEMBLES)),
    fold=r"\d+",
    split="train|test",
    tta="none|flips|dihedral",
    aggregate="mean|max",


def source_dir():
    """The Kaggle-layout folder the run reads: the generated demo or the real data."""
    return config["demo"]["dir"] if config["source"] == "demo" else config["kaggle"]["dir"]


def full_size():
    """Whether the source's images are Kaggle's full-size TIFFs (kaggle.full_size): ingest and hash_images read them."""
    return config["source"] == "kaggle" and config["kaggle"]["full_size"]


def source_files():
    """Label files and image folders of the source (produced by make_demo, or put in place by the
    user), or the sample sheet (whose images the sheet names, checked by ingest)."""
    if config["source"] == "samples":
        return {"samples": config["samples"]}
    d = source_dir()
    # Kaggle's full-size TIFFs sit in train_full_size/ and test_full_size/ (kaggle.full_size).
    suffix = "_full_size" if full_size() else ""
    return {
        "train_csv": f"{d}/train.csv",
        "sample_submission": f"{d}/sample_submission.csv",
        "train_images": f"{d}/train{suffix}",
        "test_images": f"{d}/test{suffix}",
    }


def bit_depth_images():
    """The images bit_depth measures (the sample sheet's training rows, or the training images' folder)."""
    files = source_files()
    return {"samples": files["samples"]} if "samples" in files else {"images": files["train_images"]}


def external_inputs(*names):
    """Outputs of clean_external a rule reads when external.use is on (none when off)."""
    if not config["external"]["use"]:
        return {}
    return {name: f"results/external/{name}.csv" for name in names}


def get_source_hashes(wildcards):
    """hash_images's per-channel hashes of every source image when external.use is on (none when off):
    source_duplicates searches those rather than hashing the cache again."""
    return "results/external/source_hashes.csv" if config["external"]["use"] else []


def label_columns():
    """The Id and Target columns of the source's label files (kaggle.id_column, target_column; the demo's are its own)."""
    if config["source"] == "demo":
        return {"id_column": "Id", "target_column": "Target"}
    return {k: config["kaggle"][k] for k in ("id_column", "target_column")}


def label_files():
    """The source's files that hold its training labels: train.csv, or the sample sheet."""
    return {k: v for k, v in source_files().items() if k in ("train_csv", "samples")}


def test_label_files():
    """Where the true test labels are, if anywhere: the demo's, test_labels: (checked against the
    test Ids of sample_submission.csv), or a sample sheet whose test rows are labelled."""
    if config["source"] == "samples":
        return {"samples": config["samples"]} if SHEET_TEST_LABELS else {}
    truth = config.get("test_labels")
    if config["source"] == "demo":
        truth = f"{config['demo']['dir']}/test_labels.csv"
    if not truth:
        return {}
    return {"truth": truth, "sample_submission": source_files()["sample_submission"]}


def get_test_labels():
    """The canonical test labels when the source has any, else none: an input of every rule that
    scores the test predictions, and the switch that asks for the scores."""
    return TEST_LABELS if test_label_files() else []


def label_sources():
    """Labels CSV per source for the analysis: the training labels (canonical, every listed image),
    plus the external list (as listed) when used."""
    sources = {config["source"]: LABELS}
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


def get_sampling_weights(wildcards):
    """Class weights of the co-occurrence stage, for models that oversample rare classes."""
    if MODELS[wildcards.model]["oversample"]:
        return "results/analysis/sampling_weights.csv"
    return []


def get_model_tta(wildcards):
    """The TTA settings (sorted names) of the ensembles that use a model: its predict job runs their views."""
    return sorted({ens["tta"] for ens in ENSEMBLES.values() if wildcards.model in ens["models"]})


def get_member_predictions(wildcards):
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


def get_new_image_checkpoints(wildcards):
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


def cell_outputs_of_predict():
    """predict's extra outputs where the per-cell stages are on: each fold's class maps of the test
    images and the probabilities of each test cell alone in its field."""
    if not CELLS:
        return {}
    return {
        "maps": "results/predictions/{model}/fold{fold}/test_maps.npz",
        "cells": "results/predictions/{model}/fold{fold}/test_cells.npz",
    }


def cell_inputs_of_predict():
    return {"masks": "results/cells/masks"} if CELLS else {}


def get_member_cells(wildcards):
    """The test class maps and cell probabilities of every fold of an ensemble's models, which cell_labels averages."""
    ens = ENSEMBLES[wildcards.ensemble]
    return {
        kind: [f"results/predictions/{m}/fold{k}/test_{kind}.npz" for m in ens["models"] for k in FOLDS]
        for kind in ("maps", "cells")
    }


def get_crop_masks(wildcards):
    """cell_crops of the test images cuts segment_cells' masks (the cells the submission scores); training
    images are segmented in the job itself."""
    if wildcards.split == "test":
        return {"masks": "results/cells/masks", "images": "results/cells/images.csv"}
    return {}


def get_cell_sampling_weights(wildcards):
    """Class weights of the co-occurrence stage, for a cell model that oversamples rare classes."""
    return "results/analysis/sampling_weights.csv" if CELL_MODEL["train"]["oversample"] else []


def get_cell_model(wildcards):
    """What cell_labels and evaluate_cells blend the cell model by (cells.model): every fold's cell scores, the
    ensemble's out-of-fold probabilities and the training labels."""
    if not CELL_MODEL:
        return {}
    return {
        "cell_model": [f"results/cells/model/fold{k}/cells.npz" for k in FOLDS],
        "cell_model_oof": [f"results/cells/model/fold{k}/oof.csv" for k in FOLDS],
        "oof": ensemble_table("oof")(wildcards),
        "manifest": "results/data/manifest.csv",
    }


def cell_model_outputs():
    """cell_labels' table of the cell model's blend, per class (cells.model)."""
    return {"cell_model": "results/cells/{ensemble}/cell_model.csv"} if CELL_MODEL else {}


def user_masks():
    """segment_cells reads the user's masks folder (cells.masks) where one is given."""
    return {"user_masks": CELLS["masks"]} if CELLS and CELLS["masks"] else {}


def cell_truth():
    """Named inputs of the per-cell evaluation: the truth's table and masks (and regions, where they are)."""
    if not CELLS or not CELLS["truth"]:
        return {}
    truth = CELLS["truth"]
    files = {"truth_table": f"{truth}/test_cells.csv", "truth_masks": f"{truth}/test_cells"}
    if config["source"] == "demo" or Path(truth, "test_regions").is_dir():
        files["truth_regions"] = f"{truth}/test_regions"
    return files


def cell_outputs():
    """What the per-cell stages add to the default target."""
    if not CELLS:
        return []
    names = ["cell_scores.csv", "submission_2021.csv"]
    if CELLS["gallery"]:
        names.append("gallery")
    if CELLS["truth"]:
        names += ["cell_evaluation.csv", "cell_evaluation.png"]
    return expand("results/cells/{ensemble}/{name}", ensemble=ENSEMBLES, name=names)


def get_class_groups(wildcards):
    """The co-occurrence stage's class groups, for ensembles that combine by them (not a preset or lists)."""
    ens = ENSEMBLES[wildcards.ensemble]
    if ens["combine"] == "groups" and ens["groups"] == "cooccurrence":
        return "results/analysis/class_groups.yaml"
    return []


def get_ensemble_benchmarks(wildcards):
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
    # The report's front page (scores, classes) and the per-ensemble class confusion.
    targets += ["results/report/scores.rst", "results/report/classes.rst"]
    targets += expand("results/metrics/{ensemble}/confusion.png", ensemble=ENSEMBLES)
    if any(e["transfer"] for e in ENSEMBLES.values()):
        targets.append("results/embedding/duplicates.csv")  # the embeddings exist anyway
    if get_test_labels():
        targets += expand("results/evaluation/{ensemble}.json", ensemble=ENSEMBLES)
    return targets + cell_outputs()

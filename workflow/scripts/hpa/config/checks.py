"""Checks of a whole config when the workflow starts (``common.smk``), without torch.

Each model and the embedding are built as the dataclasses their jobs build
(``hpa.config.spec``), so every check those make runs in seconds under ``snakemake -n``. Then
the settings that only take effect beside another one are looked for: given alone they
would be silently ignored, so they are refused by name, or warned about where a documented
use of a shipped config gives them on purpose. Errors are plain ``ValueError``s that name
section.name.key, the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hpa.config.spec import SCRATCH_ARCHS, EmbeddingConfig, TrainConfig
from hpa.groups import check_spec

# Keys of embedding: read by embed and embedding_duplicates, not by the training job.
SEARCH_KEYS = ("flips", "duplicate_similarity")


@dataclass(frozen=True)
class Needs:
    """A key that only takes effect when ``holds(entry, config)``; ``what`` says when, as a fix would."""

    key: str
    what: str
    holds: Callable[[dict, dict], bool]


def uses_loss(name: str) -> Callable[[dict, dict], bool]:
    return lambda entry, config: name in TrainConfig.from_dict(entry).loss_names()


def step_schedule(entry, config):
    return entry["schedule"] == "step"


def cached_larger(entry, config):
    return config["data"]["cache_size"] is not None


LOOP_NEEDS = [
    Needs("step_epochs", "schedule: step", step_schedule),
    Needs("step_gamma", "schedule: step", step_schedule),
    Needs("augment.crop_scale", "data.cache_size (crops of a larger cache)", cached_larger),
]
NEEDS = {
    "models": LOOP_NEEDS + [
        Needs("se_reduction", "head: gapnet", lambda m, c: m["head"] == "gapnet"),
        Needs("focal_gamma", "a focal loss (loss or a stage's loss)", uses_loss("focal")),
        Needs("focal_alpha", "a focal loss (loss or a stage's loss)", uses_loss("focal")),
        Needs("pos_weight_power", "a weighted_bce loss (loss or a stage's loss)", uses_loss("weighted_bce")),
        Needs("hard_fraction", "a hard_bce loss (loss or a stage's loss)", uses_loss("hard_bce")),
        Needs("stem", f"an arch other than {', '.join(SCRATCH_ARCHS)} (it takes the four channels natively)",
              lambda m, c: m["arch"] not in SCRATCH_ARCHS),
    ],
    "ensembles": [
        Needs("weights", "combine: weighted", lambda e, c: e["combine"] == "weighted"),
        Needs("groups", "combine: groups", lambda e, c: e["combine"] == "groups"),
        Needs("transfer_mode", "transfer: true", lambda e, c: e["transfer"]),
        Needs("transfer_weight", "transfer: true", lambda e, c: e["transfer"]),
    ],
    "embedding": LOOP_NEEDS,
}


def schema_properties(schema: dict, node: dict) -> dict:
    """The properties of a schema ``node``, with those of the ``$ref``s it includes (``#/$defs/...``)."""
    props = {}
    for ref in [node.get("$ref")] + [part.get("$ref") for part in node.get("allOf", [])]:
        if ref:
            props |= schema_properties(schema, resolve(schema, ref))
    return props | node.get("properties", {})


def resolve(schema: dict, ref: str) -> dict:
    node = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def schema_defaults(schema: dict, definition: str) -> dict:
    """The defaults of an entry of models: or ensembles: (``$defs/<definition>``), key by key."""
    props = schema_properties(schema, schema["$defs"][definition])
    return {k: p["default"] for k, p in props.items() if "default" in p}


def given(entry: dict, dotted: str) -> bool:
    """Whether the user's ``entry`` sets ``dotted`` (``augment.crop_scale`` looks one level down)."""
    for part in dotted.split("."):
        if not isinstance(entry, dict) or part not in entry:
            return False
        entry = entry[part]
    return True


def check_needs(section: str, name: str | None, entry: dict, filled: dict, config: dict) -> None:
    """Refuse a key of ``entry`` (as the user wrote it) that ``filled`` (with defaults) would ignore."""
    where = f"{section}.{name}" if name else section
    for need in NEEDS[section]:
        if given(entry, need.key) and not need.holds(filled, config):
            raise ValueError(f"{where}.{need.key} only applies with {need.what}, so here it would be "
                             f"ignored; set that or remove {need.key}")


def check_models(given_models: dict, models: dict, config: dict) -> None:
    """Every model as its train job reads it (``models``, with defaults), then its ignored keys."""
    for name, model in models.items():
        TrainConfig.from_dict(model, where=f"models.{name}")
        check_needs("models", name, given_models.get(name, {}), model, config)


def check_ensembles(given_ensembles: dict, ensembles: dict, models: dict, config: dict) -> None:
    for name, ens in ensembles.items():
        unknown = [m for m in ens["models"] if m not in models]
        if unknown:
            raise ValueError(f"ensembles.{name}.models names {unknown}, which are not under models: "
                             f"(known: {sorted(models)}); add them there or fix the name")
        check_needs("ensembles", name, given_ensembles.get(name, {}), ens, config)


def check_embedding(given_config: dict, config: dict, ensembles: dict) -> list[str]:
    """The embedding as train_embedding reads it; a warning when no ensemble transfers."""
    embedding = config["embedding"]
    EmbeddingConfig.from_dict({k: v for k, v in embedding.items() if k not in SEARCH_KEYS}, where="embedding")
    check_needs("embedding", None, given_config.get("embedding", {}), embedding, config)
    if "embedding" in given_config and not any(e["transfer"] for e in ensembles.values()):
        # Not refused: results/embedding/duplicates.csv, asked for by name, reads it too.
        return ["embedding: no ensemble has transfer: true, so the section only serves "
                "results/embedding/duplicates.csv when asked for by name; set transfer: true on an "
                "ensemble or remove the section"]
    return []


def check_data(given_config: dict, config: dict) -> list[str]:
    data, crops = config["data"], config["predict"]["crops"]
    if data["cache_size"] is not None and data["cache_size"] < data["image_size"]:
        raise ValueError(
            f"data.cache_size {data['cache_size']} is below data.image_size {data['image_size']}: "
            "the models take image_size crops of the cached images; raise cache_size or set it to null"
        )
    # crops: none is accepted: an overlay switching the crops off (config/whole_images.yaml) says so.
    if data["cache_size"] is None and crops != "none":
        raise ValueError(f"predict.crops: {crops} only applies with data.cache_size (crops of a larger "
                         "cache), which is null, so it would be ignored; set data.cache_size or crops: none")
    external = sorted(set(given_config.get("external", {})) - {"use"})
    if external and not config["external"]["use"]:
        # Not refused: switching use off in a config that sets the rest is the documented way to drop them.
        return [f"external: use is false, so {external} are ignored; set use: true to use the "
                "external images, or remove those keys"]
    return []


def check_source(config: dict, vocab) -> None:
    """Refuse source keys that contradict each other: the sample sheet without source samples (or the
    reverse), test labels the source already has, and the HPAv18 images beside another vocabulary."""
    source = config["source"]
    if config.get("samples") and source != "samples":
        raise ValueError(f"samples: {config['samples']} is only read with source: samples (here {source}); "
                         "set source: samples or remove samples")
    if source == "samples" and not config.get("samples"):
        raise ValueError("source: samples needs samples: path/to/samples.tsv, the sample sheet (columns Id, "
                         "split, Target and one per channel; workflow/schemas/samples.schema.yaml)")
    if config.get("test_labels") and source in ("demo", "samples"):
        has = "the demo has its own test labels" if source == "demo" else "a sample sheet's test rows hold them"
        raise ValueError(f"test_labels: {config['test_labels']} cannot be used with source: {source} ({has}); "
                         "remove test_labels" + (" and fill the sheet's Target of every test row" if source == "samples"
                                                 else ""))
    if config["external"]["use"]:
        from hpa.classes import CHANNELS  # here: hpa.classes imports pandas (hpa.files)

        if not vocab.is_hpa or vocab.channels != CHANNELS:
            raise ValueError("external.use: the HPAv18 images carry the 2018 task's 28 classes and its 4 stains "
                             f"{', '.join(CHANNELS)}, not this config's labels:/channels: ({vocab.n_classes} classes, "
                             f"channels {', '.join(vocab.channels)}); set external.use: false")
        if source == "samples":
            raise ValueError("external.use: the HPAv18 images are compared for leaks with a Kaggle-layout folder "
                             "(source demo or kaggle), not a sample sheet; set external.use: false")


def check_classes(given_config: dict, ensembles: dict, vocab) -> None:
    """The settings counted in classes against the vocabulary's (``labels:``): class groups and their number."""
    n_groups = given_config.get("analysis", {}).get("n_groups")
    # The default (6) is capped at the number of classes by the class_groups stage (logged there).
    if n_groups is not None and n_groups > vocab.n_classes:
        raise ValueError(f"analysis.n_groups: {n_groups} groups of {vocab.n_classes} classes (labels:) leaves "
                         f"some empty; give at most {vocab.n_classes}")
    for name, ens in ensembles.items():
        if ens["combine"] == "groups":
            check_spec(ens["groups"], vocab, where=f"ensembles.{name}.groups")


def check_config(given_config: dict, config: dict, models: dict, ensembles: dict, vocab) -> list[str]:
    """Refuse what ``config`` (validated, defaults filled; ``models``/``ensembles`` filled too)
    cannot do or would ignore of ``given_config`` (as written), or what does not fit the classes of
    ``vocab`` (the config's ``hpa.classes.Vocabulary``); return the warnings."""
    check_source(config, vocab)
    check_models(given_config.get("models", {}), models, config)
    check_ensembles(given_config.get("ensembles", {}), ensembles, models, config)
    check_classes(given_config, ensembles, vocab)
    return check_embedding(given_config, config, ensembles) + check_data(given_config, config)


def cell_settings(config: dict, vocab, given: dict | None = None, schema: dict | None = None
                  ) -> tuple[dict | None, list[str]]:
    """``cells:`` resolved against the channels (the atlas's stains where it names none) and checked:
    the nuclear and cell-body channels must be the dataset's, and the masks or truth folder must exist.
    Returns (the settings, or None where the per-cell stages are off; warnings). Stains that cannot be
    resolved from the defaults turn the stages off with a warning, unless ``given`` (the config as
    written) asked for them (then it is an error). ``schema``: the config's, for ``cells.model``'s defaults."""
    from pathlib import Path

    cells = dict(config["cells"])
    if not cells["enabled"]:
        return None, []
    asked = bool((given or {}).get("cells"))
    channels = vocab.channels
    nucleus = cells["nucleus_channel"] or ("blue" if "blue" in channels else None)
    body = list(cells["body_channels"] or [c for c in ("red", "yellow") if c in channels])
    for key, missing, example in (("nucleus_channel", nucleus is None, "dapi"), ("body_channels", not body, "[tubulin]")):
        if not missing:
            continue
        why = (f"cells.{key}: the channels ({', '.join(channels)}) have no "
               + ("'blue'" if key == "nucleus_channel" else "'red' or 'yellow'"))
        if asked:
            raise ValueError(f"{why}; name the stain (cells.{key}: {example}), or set cells.enabled: false")
        return None, [f"{why}, so the per-cell stages are off; set cells.{key} (e.g. {example}) to turn them on"]
    unknown = [c for c in (nucleus, *body) if c not in channels]
    if unknown:
        raise ValueError(f"cells.nucleus_channel/body_channels: {unknown} are not channels of this dataset "
                         f"({', '.join(channels)}); use those names")
    if nucleus in body:
        raise ValueError(f"cells.body_channels: {nucleus!r} is the nuclear stain (cells.nucleus_channel); "
                         "list the stains of the cytoplasm")
    if config["source"] == "demo" and cells["truth"] is None:
        cells["truth"] = config["demo"]["dir"]  # the demo keeps its cells' truth beside its test labels
    for key, must in (("masks", None), ("truth", "test_cells.csv")):
        folder = cells[key]
        if folder is None or (key == "truth" and config["source"] == "demo" and folder == config["demo"]["dir"]):
            continue
        if not Path(folder).is_dir() or (must and not (Path(folder) / must).is_file()):
            wanted = f"a folder holding {must}, test_cells/ and test_regions/" if must else \
                "a folder of one label image per test Id"
            raise ValueError(f"cells.{key}: {folder} is not {wanted}")
    partial = cells.get("partial_cells") or ("keep" if cells["masks"] else "discount")
    return cells | {"nucleus_channel": nucleus, "body_channels": body, "partial_cells": partial,
                    "model": cell_model(cells.get("model"), schema)}, []


def cell_model(entry: dict | None, schema: dict | None) -> dict | None:
    """``cells.model`` (defaults filled) with its ``train`` filled as a model's and checked as the schema's
    ``$defs/model`` and a train job read it; None where it has no ``train`` (no cell model)."""
    if not entry or not entry.get("train"):
        return None
    if schema is None:
        raise ValueError("cells.model: its train keys are checked against the config's schema; pass it")
    import jsonschema

    train = schema_defaults(schema, "model") | dict(entry["train"])
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/model", "$defs": schema["$defs"]})
    for error in validator.iter_errors(train):
        where = ".".join(["cells.model.train", *map(str, error.absolute_path)])
        raise ValueError(f"{where}: {error.message}")
    TrainConfig.from_dict(train, where="cells.model.train")
    return dict(entry) | {"train": train}

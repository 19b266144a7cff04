"""The config schema, the shipped configs and the conda envs agree with the code."""

import ast
import copy
import dataclasses
import inspect
import re
import subprocess
import sys
import time
import tomllib

import pytest
import yaml
from conftest import REPO
from snakemake.utils import validate

from hpa.config.checks import schema_properties
from hpa.config.spec import RUNTIME_KEYS, TrainConfig

SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "iterstrat": "iterative-stratification",
                 "yaml": "pyyaml", "skimage": "scikit-image"}


def props_of(node) -> dict:
    """A schema node's properties, with those it takes from $defs/training by $ref."""
    return schema_properties(SCHEMA, node)


def schema_leaves(node, path=()):
    for key, prop in props_of(node).items():
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and "$ref" in extra:
            ref = extra["$ref"].split("/")[-1]
            yield path + (key,), prop
            yield from schema_leaves(SCHEMA["$defs"][ref], path + (key, "<name>"))
        elif prop.get("type") == "object":
            yield path + (key,), prop
            yield from schema_leaves(prop, path + (key,))
        else:
            yield path + (key,), prop


def test_every_schema_key_has_type_description_and_default():
    for path, prop in schema_leaves(SCHEMA):
        name = ".".join(path)
        assert "type" in prop and prop.get("description"), name
        required = path[-1] in ("models", "ensembles") or path == ("ensembles", "<name>", "models")
        assert required or "default" in prop, f"{name} has no default"


def test_the_runtime_only_keys_are_the_schemas():
    props = props_of(SCHEMA["$defs"]["model"])
    assert {k for k, p in props.items() if p.get("x-runtime-only")} == set(RUNTIME_KEYS) == {"compile"}


def test_the_keys_a_model_and_the_embedding_share_are_written_once():
    """In $defs/training; each section's own properties add only what differs (arch's choices, the
    epochs' and batch's defaults and minimum, compile being runtime-only for a model alone)."""
    from hpa.config.spec import LoopConfig

    model, embedding = SCHEMA["$defs"]["model"], SCHEMA["properties"]["embedding"]
    shared = set(SCHEMA["$defs"]["training"]["properties"])
    assert model["$ref"] == embedding["$ref"] == "#/$defs/training"
    assert set(model["properties"]) & set(embedding["properties"]) == {"arch", "epochs", "batch_size", "compile"}
    assert shared == LoopConfig.known_keys() - {"epochs", "batch_size", "compile"}


@pytest.mark.parametrize("section,entry", [("models", {"margin": 0.3}), ("embedding", {"head": "gapnet"}),
                                           ("models", {"augment": {"flip": True}})])
def test_a_key_of_the_other_section_is_still_unknown(section, entry):
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError, match="Unevaluated properties are not allowed|Additional properties"):
        validate(with_entry(section, entry), str(SCHEMA_PATH))


def test_model_defaults_are_the_training_defaults():
    props = props_of(SCHEMA["$defs"]["model"])
    defaults = dataclasses.asdict(TrainConfig())
    assert set(props) == set(defaults)
    for name, value in defaults.items():
        if name == "augment":
            nested = {k: p["default"] for k, p in props["augment"]["properties"].items()}
            assert nested == {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        else:
            assert props[name]["default"] == value, name


def test_config_readme_documents_every_key():
    readme = (REPO / "config/README.md").read_text()
    for path, _ in schema_leaves(SCHEMA):
        parts = [p for p in path if p != "<name>"]
        # Documented under its section's table: any trailing part of the dotted key will do.
        spellings = {".".join(parts[i:]) for i in range(len(parts))}
        assert any(f"`{k}`" in readme for k in spellings), ".".join(parts)


def pinned_versions():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(d.split("==") for d in deps)


def test_every_optional_dependency_is_pinned():
    # The [test] extra's linters (snakefmt, ruff) judge the code: an unpinned one changes the verdict.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    loose = [d for deps in extras.values() for d in deps if "==" not in d and not d.startswith("hpa-pipeline[")]
    assert loose == []
    assert any(d.startswith("ruff==") for d in extras["test"])


def env_packages(env_file):
    spec = yaml.safe_load(env_file.read_text())
    packages = {}
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            name, _, version = item.replace("==", "=").partition("=")
            packages[name.strip()] = version.strip() or None
    return packages


def rules_with_scripts():
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            rule = re.match(r"rule (\w+):", block)
            if not rule:
                continue
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            yield rule.group(1), smk.parent / conda.group(1), smk.parent / script.group(1)


def imports_of(path, seen=None):
    """Top-level packages a script imports, following the hpa package's own modules."""
    seen = seen if seen is not None else set()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("hpa." + node.module if node.module else "hpa") if node.level else node.module
            # `from hpa import thresholds` imports a module too: follow both spellings.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "hpa":
                module = REPO / "workflow/scripts" / (name.replace(".", "/") + ".py")
                if module.exists() and module not in seen:
                    seen.add(module)
                    found |= imports_of(module, seen)
            else:
                found.add(top)
    return found


def test_every_rule_env_provides_its_scripts_imports_at_the_pinned_versions():
    pins = pinned_versions()
    stdlib = set(sys.stdlib_module_names)
    checked = 0
    for rule, env_file, script in rules_with_scripts():
        packages = env_packages(env_file)
        for top in imports_of(script) - stdlib - {"__future__"}:
            dist = DISTRIBUTIONS.get(top, top)
            assert dist in packages, f"rule {rule}: {script.name} imports {top}, missing from {env_file.name}"
            if dist in pins:
                assert packages[dist] == pins[dist], f"{env_file.name}: {dist} {packages[dist]} != {pins[dist]}"
            checked += 1
    assert checked > 20


def test_every_rule_has_log_benchmark_and_conda():
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            if block.startswith("rule "):
                for directive in ("log:", "benchmark:", "conda:"):
                    assert directive in block, f"{smk.name}: {block.splitlines()[0]} lacks {directive}"


def startup_checks(config: dict) -> list[str]:
    """What common.smk does with a config before any rule: validate, fill, check; the warnings."""
    from hpa.classes import Vocabulary
    from hpa.config.checks import check_config, schema_defaults

    given = copy.deepcopy(config)
    validate(config, str(SCHEMA_PATH))
    models = {n: schema_defaults(SCHEMA, "model") | m for n, m in config["models"].items()}
    ensembles = {n: schema_defaults(SCHEMA, "ensemble") | e for n, e in config["ensembles"].items()}
    return check_config(given, config, models, ensembles, Vocabulary.from_config(config))


def overlaid(base: dict, overlay: dict) -> dict:
    """``overlay`` given after ``base`` with --configfile: mappings merged key by key, as Snakemake does."""
    merged = dict(base)
    for key, value in overlay.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = overlaid(base[key], value) if both else value
    return merged


def shipped_config(name: str) -> dict:
    config = yaml.safe_load((REPO / "config" / name).read_text())
    if name == "whole_images.yaml":  # an overlay, given after benchmark_crops.yaml
        return overlaid(yaml.safe_load((REPO / "config/benchmark_crops.yaml").read_text()), config)
    return config


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_shipped_config_passes_the_startup_checks_without_a_warning(name):
    assert startup_checks(shipped_config(name)) == []


def test_the_startup_checks_import_no_torch():
    """common.smk imports them in the Snakemake process, which need not have torch (or numpy)."""
    code = "import sys, hpa.config.checks; print(sorted({'torch', 'numpy', 'pandas'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# (section, entry of TINY replaced or merged, the error's start). Each a setting the train job
# would silently ignore (or, patience, refuse hours in); all refused by snakemake -n.
REFUSED = [
    ("models", {"focal_gamma": 3.0}, "models.tiny.focal_gamma only applies with a focal loss"),
    ("models", {"focal_alpha": 0.25}, "models.tiny.focal_alpha only applies with a focal loss"),
    ("models", {"pos_weight_power": 1.0}, "models.tiny.pos_weight_power only applies with a weighted_bce loss"),
    ("models", {"hard_fraction": 0.2}, "models.tiny.hard_fraction only applies with a hard_bce loss"),
    ("models", {"step_epochs": 3}, "models.tiny.step_epochs only applies with schedule: step"),
    ("models", {"step_gamma": 0.5}, "models.tiny.step_gamma only applies with schedule: step"),
    ("models", {"augment": {"crop_scale": [0.8, 1.2]}}, "models.tiny.augment.crop_scale only applies with data.cache_size"),
    ("models", {"arch": "branchnet", "stem": "copy_r"}, "models.tiny.stem only applies with an arch other than branchnet"),
    ("models", {"se_reduction": 8}, "models.tiny.se_reduction only applies with head: gapnet"),
    ("models", {"patience": 2}, "models.tiny.patience: 2 stops at the best validation epoch, so it needs keep: best"),
    ("embedding", {"step_gamma": 0.5}, "embedding.step_gamma only applies with schedule: step"),
    ("predict", {"crops": "five"}, "predict.crops: five only applies with data.cache_size"),
    ("ensembles", {"weights": [1.0]}, "ensembles.main.weights only applies with combine: weighted"),
    ("ensembles", {"groups": "ntu"}, "ensembles.main.groups only applies with combine: groups"),
    ("ensembles", {"transfer_weight": 0.5}, "ensembles.main.transfer_weight only applies with transfer: true"),
]


def with_entry(section: str, entry: dict) -> dict:
    from conftest import TINY

    config = copy.deepcopy(TINY)
    if section in ("models", "ensembles"):
        name = next(iter(config[section]))
        config[section][name] |= entry
    else:
        config[section] = entry
    return config


@pytest.mark.parametrize("section,entry,message", REFUSED, ids=[m.split(" ")[0] for _, _, m in REFUSED])
def test_a_setting_that_cannot_work_or_would_be_ignored_stops_the_dry_run_in_seconds(tmp_path, section, entry, message):
    from conftest import snakemake

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(with_entry(section, entry)))
    start = time.monotonic()
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr
    assert time.monotonic() - start < 60


# What TrainConfig.check refuses in a train job, refused by the same code when the workflow starts.
CANNOT_WORK = [
    ("models", {"arch": "branchnet", "pretrained": "imagenet"}, "models.tiny.pretrained: arch 'branchnet' has no pretrained"),
    ("models", {"validate_every": 2, "keep": "best"}, "models.tiny.validate_every: 2; give 1, or more with keep: last"),
    ("models", {"processes": 3}, "models.tiny.batch_size: 8 is the global batch and must divide evenly over 3"),
    ("models", {"stages": [{"loss": "bce", "epochs": 1}, {"loss": "soft_f1"}]}, "models.tiny.stages: the stages before the last"),
    ("embedding", {"processes": 2, "batch_size": 33}, "embedding.batch_size: 33 is the global batch"),
]


@pytest.mark.parametrize("section,entry,message", CANNOT_WORK, ids=[m.split(" ")[0] for _, _, m in CANNOT_WORK])
def test_what_a_train_job_would_refuse_is_refused_at_startup_by_name(section, entry, message):
    with pytest.raises(ValueError) as refused:
        startup_checks(with_entry(section, entry))
    assert str(refused.value).startswith(message)


# The same settings with the key they need: accepted (so the refusals above are about the pairing).
ACCEPTED = [
    ("models", {"loss": {"focal": 1.0, "lovasz": 0.5}, "focal_gamma": 3.0, "focal_alpha": 0.25}),
    ("models", {"stages": [{"loss": "weighted_bce", "epochs": 1}, {"loss": "hard_bce"}], "epochs": 2,
                "pos_weight_power": 1.0, "hard_fraction": 0.2}),
    ("models", {"schedule": "step", "step_epochs": 3, "step_gamma": 0.5}),
    ("models", {"arch": "branchnet"}),
    ("models", {"head": "gapnet", "se_reduction": 8}),
    ("models", {"patience": 2, "keep": "best", "processes": 2}),
    ("embedding", {"schedule": "step", "step_gamma": 0.5}),
]


@pytest.mark.parametrize("section,entry", ACCEPTED)
def test_the_same_settings_with_the_key_they_need_pass(section, entry):
    assert startup_checks(with_entry(section, entry)) == ([] if section != "embedding" else [
        "embedding: no ensemble has transfer: true, so the section only serves results/embedding/duplicates.csv "
        "when asked for by name; set transfer: true on an ensemble or remove the section"])


def test_cropping_settings_pass_with_a_larger_cache():
    config = with_entry("models", {"augment": {"crop_scale": [0.8, 1.2]}})
    config["data"] = {"image_size": 32, "cache_size": 48}
    config["predict"] = {"crops": "five"}
    assert startup_checks(config) == []


def test_external_keys_with_use_false_and_an_unused_embedding_warn_by_name(tmp_path):
    """Warned, not refused: switching external.use off in hpa.yaml is how README drops the external images,
    and an embedding without a transferring ensemble still serves results/embedding/duplicates.csv."""
    from conftest import TINY, snakemake

    config = copy.deepcopy(TINY)
    config["external"]["use"] = False
    config["embedding"] = {"epochs": 1}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    output = result.stdout + result.stderr
    ignored = "['backoff', 'base_url', 'list', 'rate', 'retries', 'size', 'workers']"
    assert f"external: use is false, so {ignored} are ignored" in output
    assert "embedding: no ensemble has transfer: true" in output


@pytest.mark.parametrize("section,name", [("models", "a/b"), ("models", "../evil"), ("ensembles", ".hidden"),
                                          ("ensembles", "x y")])
def test_a_model_or_ensemble_name_that_is_not_a_plain_file_name_is_refused(tmp_path, section, name):
    from conftest import snakemake

    config = with_entry(section, {})
    config[section] = {name: config[section].popitem()[1]}
    if section == "models":
        config["ensembles"]["main"]["models"] = [name]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0 and f"'{name}' does not match" in result.stdout + result.stderr


def test_a_dot_in_a_model_name_matches_only_itself(tmp_path):
    """re.escape in wildcard_constraints: model "a.b" must not claim the paths of an unknown model "aXb"."""
    from conftest import snakemake

    config = with_entry("models", {})
    config["models"] = {"a.b": config["models"]["tiny"]}
    config["ensembles"] = {"main": {"models": ["a.b"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(tmp_path, "-n", "results/models/a.b/curves.png", check=False).returncode == 0
    result = snakemake(tmp_path, "-n", "results/models/aXb/curves.png", check=False)
    assert result.returncode != 0 and "MissingRuleException" in result.stdout + result.stderr


def enum_of(prop):
    return [v for v in prop["enum"] if v is not None]


def test_schema_enums_are_the_codes_choices():
    """Every choice the schema offers is one the code knows, and the code offers no other."""
    from hpa.config.spec import KEEP
    from hpa.dihedral import TTA_TRANSFORMS
    from hpa.loop.optim import OPTIMIZERS, SCHEDULES
    from hpa.models.backbones import ARCHITECTURES, STEMS
    from hpa.models.factory import HEADS
    from hpa.models.heads import NORMALIZATIONS
    from hpa.postprocess.transfer import MODES
    from hpa.runtime.device import AMP_DTYPES
    from hpa.thresholds import METHODS

    model = props_of(SCHEMA["$defs"]["model"])
    embedding = props_of(SCHEMA["properties"]["embedding"])
    ensemble = SCHEMA["$defs"]["ensemble"]["properties"]
    pairs = {
        "stem": (model["stem"], STEMS), "head": (model["head"], HEADS), "normalize": (model["normalize"], NORMALIZATIONS),
        "keep": (model["keep"], KEEP), "amp": (model["amp"], AMP_DTYPES), "optimizer": (model["optimizer"], OPTIMIZERS),
        "schedule": (model["schedule"], SCHEDULES), "tta": (ensemble["tta"], TTA_TRANSFORMS),
        "threshold": (ensemble["threshold"], METHODS), "transfer_mode": (ensemble["transfer_mode"], MODES),
        "embedding.stem": (embedding["stem"], STEMS), "embedding.amp": (embedding["amp"], AMP_DTYPES),
        "embedding.optimizer": (embedding["optimizer"], OPTIMIZERS),
        "embedding.schedule": (embedding["schedule"], SCHEDULES),
    }
    if "enum" in model["arch"]:
        pairs["arch"] = (model["arch"], ARCHITECTURES)
    from hpa.config.spec import SCRATCH_ARCHS
    from hpa.models.backbones import SCRATCH

    assert sorted(SCRATCH) == sorted(SCRATCH_ARCHS)
    for name, (prop, choices) in pairs.items():
        assert sorted(enum_of(prop)) == sorted(choices), name


def test_the_loop_keys_have_one_default_for_the_classifier_and_the_embedding():
    from hpa.config.spec import LoopConfig

    model = props_of(SCHEMA["$defs"]["model"])
    embedding = props_of(SCHEMA["properties"]["embedding"])
    for name in LoopConfig.known_keys() - {"epochs", "augment"}:
        assert model[name]["default"] == embedding[name]["default"] == getattr(LoopConfig(), name), name


def signature_defaults(func) -> dict:
    return {k: p.default for k, p in inspect.signature(func).parameters.items() if p.default is not p.empty}


def field_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def test_every_library_default_of_a_config_key_is_the_schemas():
    """Defaults outside the training dataclasses (tested above): each the schema's for the key it stands for."""
    from hpa.data.images import BitDepth
    from hpa.external.clean import CleanSettings
    from hpa.external.download import Settings
    from hpa.labels.sampling import class_weights
    from hpa.models.losses import FocalLoss, HardBCE, pos_weights

    top, model = SCHEMA["properties"], props_of(SCHEMA["$defs"]["model"])
    external, dedup = top["external"]["properties"], top["external"]["properties"]["dedup"]["properties"]
    # (the library's defaults, {its name: the schema property that configures it})
    pairs = [
        (field_defaults(BitDepth), top["data"]["properties"]["bit_depth"]["properties"]),
        (field_defaults(Settings), {**{k: external[k] for k in ("size", "yellow", "workers", "retries", "timeout",
                                                                 "rate", "backoff")}, "hash": dedup["hash"]}),
        (field_defaults(CleanSettings), {**dedup, "blank_std": external["blank_std"]}),
        (signature_defaults(class_weights), {"power": top["analysis"]["properties"]["weight_power"],
                                             "cap": top["analysis"]["properties"]["weight_cap"]}),
        (signature_defaults(FocalLoss), {"gamma": model["focal_gamma"], "alpha": model["focal_alpha"]}),
        (signature_defaults(HardBCE), {"fraction": model["hard_fraction"]}),
        (signature_defaults(pos_weights), {"power": model["pos_weight_power"]}),
    ]
    checked = 0
    for defaults, props in pairs:
        for name, prop in props.items():
            value = defaults[name]
            assert (list(value) if isinstance(value, tuple) else value) == prop["default"], name
            checked += 1
    assert checked == 4 + 8 + 5 + 2 + 2 + 1 + 1

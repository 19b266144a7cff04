"""The config schema, the shipped configs and the conda envs agree with the code."""

import ast
import dataclasses
import re
import sys
import tomllib

import pytest
import yaml
from snakemake.utils import validate

from hpa.loop.config import RUNTIME_KEYS
from hpa.training.config import TrainConfig

from conftest import REPO

SCHEMA_PATH = REPO / "workflow/schemas/config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())

# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "iterstrat": "iterative-stratification",
                 "yaml": "pyyaml"}


def schema_leaves(node, path=()):
    for key, prop in node.get("properties", {}).items():
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
    props = SCHEMA["$defs"]["model"]["properties"]
    assert {k for k, p in props.items() if p.get("x-runtime-only")} == set(RUNTIME_KEYS) == {"compile"}


def test_model_defaults_are_the_training_defaults():
    props = SCHEMA["$defs"]["model"]["properties"]
    defaults = dataclasses.asdict(TrainConfig())
    assert set(props) == set(defaults)
    for name, value in defaults.items():
        if name == "augment":
            nested = {k: p["default"] for k, p in props["augment"]["properties"].items()}
            assert nested == {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        else:
            assert props[name]["default"] == value, name


@pytest.mark.parametrize("name", ["config.yaml", "hpa.yaml", "hpa_crops.yaml", "seeds.yaml", "benchmark.yaml", "benchmark_crops.yaml"])
def test_shipped_configs_validate(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    validate(config, str(SCHEMA_PATH))
    for ens in config["ensembles"].values():
        assert set(ens["models"]) <= set(config["models"])


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


@pytest.mark.parametrize("section,entry,message", [
    ("models", {"arch": "resnet18", "se_reduction": 8}, "models.tiny.se_reduction only applies with head: gapnet"),
    ("ensembles", {"models": ["tiny"], "weights": [1.0]}, "ensembles.main.weights only applies with combine: weighted"),
    ("ensembles", {"models": ["tiny"], "groups": "ntu"}, "ensembles.main.groups only applies with combine: groups"),
    ("ensembles", {"models": ["tiny"], "transfer_weight": 0.5}, "transfer_weight only applies with transfer: True"),
])
def test_a_key_given_without_the_key_that_reads_it_is_refused_by_name(tmp_path, section, entry, message):
    from conftest import TINY, snakemake

    config = {**TINY, section: {("tiny" if section == "models" else "main"): entry}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0 and message in result.stdout + result.stderr
    ok = {**TINY, section: {("tiny" if section == "models" else "main"): {
        **entry, **({"head": "gapnet"} if "se_reduction" in entry else {}),
        **({"combine": "weighted"} if "weights" in entry else {}),
        **({"combine": "groups"} if "groups" in entry else {})}}}
    if "transfer_weight" not in entry:
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(ok))
        assert snakemake(tmp_path, "-n", check=False).returncode == 0


def enum_of(prop):
    return [v for v in prop["enum"] if v is not None]


def test_schema_enums_are_the_codes_choices():
    """Every choice the schema offers is one the code knows, and the code offers no other."""
    from hpa.dihedral import TTA_TRANSFORMS
    from hpa.models.backbones import ARCHITECTURES, STEMS
    from hpa.models.factory import HEADS
    from hpa.models.heads import NORMALIZATIONS
    from hpa.postprocess.transfer import MODES
    from hpa.thresholds import METHODS
    from hpa.training.config import KEEP
    from hpa.runtime.device import AMP_DTYPES
    from hpa.loop.optim import OPTIMIZERS, SCHEDULES

    model = SCHEMA["$defs"]["model"]["properties"]
    embedding = SCHEMA["properties"]["embedding"]["properties"]
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
    for name, (prop, choices) in pairs.items():
        assert sorted(enum_of(prop)) == sorted(choices), name


def test_the_loop_keys_have_one_default_for_the_classifier_and_the_embedding():
    from hpa.loop.config import LoopConfig

    model = SCHEMA["$defs"]["model"]["properties"]
    embedding = SCHEMA["properties"]["embedding"]["properties"]
    for name in LoopConfig.known_keys() - {"epochs", "augment"}:
        assert model[name]["default"] == embedding[name]["default"] == getattr(LoopConfig(), name), name

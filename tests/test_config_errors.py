"""Config mistakes are said in a few lines (hpa.config.errors), and --config/--configfile
combine as config/README.md says: --configfile replaces the demo's config, --config
overrides single keys of whichever config is in force."""

import copy
import sys

import pytest
import yaml
from conftest import REPO, TINY, job_counts, snakemake
from test_documented_commands import working_tree_copy

from hpa.config.errors import ConfigSources, explain

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def schema_error(config: dict) -> Exception:
    """The error Snakemake's validate() raises for ``config``, as common.smk catches it."""
    from snakemake.utils import validate

    with pytest.raises(Exception) as caught:
        # validate() fills defaults into the dicts it is given: a copy, so TINY's nested sections stay
        # as written (a TINY with filled defaults plans other params, and other tests then rerun jobs)
        validate(copy.deepcopy(config), str(REPO / "workflow/schemas/config.schema.yaml"))
    return caught.value


def written(tmp_path, config: dict):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return ConfigSources(files=[str(path)])


def tiny(**model):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["models"]["tiny"].update(model)
    return config


def test_an_unknown_model_key_names_the_model_the_key_the_likely_one_and_the_line(tmp_path):
    config = tiny(epoch=3)
    text = explain(schema_error(config), SCHEMA, written(tmp_path, config))
    assert "models.tiny.epoch: unknown key; did you mean 'epochs'?" in text
    line = next(i for i, s in enumerate((tmp_path / "mine.yaml").read_text().splitlines(), 1) if "epoch:" in s)
    assert text.startswith(f"Config error in {tmp_path / 'mine.yaml'}, line {line}:")
    assert len(text.splitlines()) <= 4


@pytest.mark.parametrize("key,value,suggested,listed", [
    ("loss", "focl", "focal", "weighted_bce"),
    ("arch", "resnt18", "resnet18", "text matching ^timm/"),
])
def test_a_value_outside_the_choices_lists_them_and_suggests_one(tmp_path, key, value, suggested, listed):
    config = tiny(**{key: value})
    text = explain(schema_error(config), SCHEMA, written(tmp_path, config))
    assert f"models.tiny.{key}: {value} is not allowed; did you mean {suggested!r}?" in text
    assert "allowed: " in text and listed in text


@pytest.mark.parametrize("key,value,said", [
    ("epochs", "ten", "models.tiny.epochs: 'ten' is text; give an integer"),
    ("focal_alpha", "x", "models.tiny.focal_alpha: 'x' is text; give null or a number"),
])
def test_a_wrong_type_says_what_to_give(tmp_path, key, value, said):
    config = tiny(**{key: value})
    assert said in explain(schema_error(config), SCHEMA, written(tmp_path, config))


def test_an_unknown_key_like_no_known_one_lists_the_keys_there(tmp_path):
    config = tiny(augment={"flipz": True})
    text = explain(schema_error(config), SCHEMA, written(tmp_path, config))
    assert "models.tiny.augment.flipz: unknown key\n" in text and "allowed keys here: brightness, " in text


def test_a_value_given_with_config_on_the_command_line_is_named_as_such(tmp_path):
    config = dict(TINY, folds=3)
    sources = ConfigSources(files=[str(tmp_path / "mine.yaml")], overrides={"folds": 3})
    assert explain(schema_error(config), SCHEMA, sources).startswith("Config error in --config folds=3:")


def test_a_config_check_message_keeps_its_words_and_gains_the_file_and_line(tmp_path):
    sources = written(tmp_path, tiny(se_reduction=4))
    error = ValueError("models.tiny.se_reduction only applies with head: gapnet; set head: gapnet or remove it")
    text = explain(error, SCHEMA, sources)
    assert text.splitlines()[0].startswith(f"Config error in {tmp_path / 'mine.yaml'}, line ")
    assert text.splitlines()[1].strip() == str(error)


def terminal(result) -> list[str]:
    return (result.stdout + result.stderr).strip().splitlines()


def test_snakemake_n_with_a_typo_in_a_model_key_says_it_in_a_few_lines(tmp_path):
    """The terminal output of `snakemake -n` as a user sees it: was 517 lines of schema dump."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny(epoch=3)))
    result = snakemake(tmp_path, "-n", check=False)
    lines = terminal(result)
    assert result.returncode != 0
    assert len(lines) <= 10, "\n".join(lines)
    assert any("models.tiny.epoch: unknown key; did you mean 'epochs'?" in line for line in lines), lines
    # the file as seen from the working directory (Snakemake's --directory, here tmp_path)
    assert any(line.startswith("Config error in config.yaml, line ") for line in lines), lines


def test_snakemake_n_with_a_refused_combination_says_it_in_a_few_lines(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny(se_reduction=4)))
    result = snakemake(tmp_path, "-n", check=False)
    lines = terminal(result)
    assert result.returncode != 0 and len(lines) <= 10, "\n".join(lines)
    assert any("models.tiny.se_reduction only applies with head: gapnet" in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The working tree as a fresh clone has it: the Snakefile reads config/config.yaml from here."""
    return working_tree_copy(tmp_path_factory.mktemp("repo"))


def planned(root, *args) -> dict[str, int]:
    import subprocess

    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=root, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return job_counts(result.stdout)


DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.workflow  # plans the whole demo
def test_config_key_value_overrides_one_key_of_the_demo_config(repo_copy):
    """`--config new_images=...` changes that key alone: the demo's models and folds stay (not a
    config of just new_images, which stopped at "'models' is a required property")."""
    (repo_copy / "elsewhere").mkdir(exist_ok=True)
    ensemble, members = next(iter(DEMO["ensembles"].items()))
    counts = planned(repo_copy, f"results/new_images/{ensemble}.csv", "--config", "new_images=elsewhere")
    assert counts["predict_new"] == 1 and counts["train"] == DEMO["folds"]["n"] * len(members["models"])


@pytest.mark.workflow
def test_a_configfile_replaces_the_demo_config_and_config_overrides_a_key_of_it(repo_copy, tmp_path):
    (tmp_path / "solo.yaml").write_text(yaml.safe_dump(TINY))
    solo = ["--configfile", str(tmp_path / "solo.yaml")]
    assert planned(repo_copy, *solo)["train"] == TINY["folds"]["n"]  # the one model: not the demo's too
    (repo_copy / "elsewhere").mkdir(exist_ok=True)
    counts = planned(repo_copy, "results/new_images/main.csv", *solo, "--config", "new_images=elsewhere")
    assert counts["predict_new"] == 1 and counts["train"] == TINY["folds"]["n"]


def test_a_nested_value_given_with_config_is_explained(tmp_path):
    config = dict(TINY, folds={"n": "2"})
    sources = ConfigSources(files=[str(tmp_path / "mine.yaml")], overrides={"folds": {"n": "2"}})
    text = explain(schema_error(config), SCHEMA, sources)
    assert "folds.n: '2' is text; give an integer" in text and "set this key in a config file" in text

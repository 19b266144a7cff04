"""Rerunning single stages (docs/stages.md "Rerunning one stage"): what reruns after a target, a flag or a change.

Dry runs (-n) where the plan is the point; real runs where what was skipped matters.
"""

import copy
import re
from types import SimpleNamespace

import pytest
import yaml
from conftest import TINY, job_counts, snakemake

pytestmark = pytest.mark.workflow

UPSTREAM_OF_TRAINING = {"make_demo", "ingest", "cache_images", "channel_stats", "make_folds"}
FROM_TRAINING_ON = {"train", "predict", "combine_views", "blend", "fit_thresholds", "make_submission", "evaluate_test"}
THRESHOLDS_ON = {"fit_thresholds": 1, "make_submission": 1, "evaluate_test": 1}
BEFORE_THRESHOLDS = {"train", "predict", "combine_views", "blend"}

# Two models, so that changing one can be seen not to retrain the other.
TWO = copy.deepcopy(TINY)
TWO["models"] = {"a": TINY["models"]["tiny"], "b": dict(TINY["models"]["tiny"], seed=1)}
TWO["ensembles"] = {"main": {"models": ["a", "b"], "tta": "flips"}}


def model_pt(model, fold):
    return f"results/models/{model}/fold{fold}/model.pt"


def planned_jobs(output):
    """(rule, wildcards, reason) of every job in a dry run's output, in order."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        rule = re.match(r"(?:local)?rule (\w+):\n", block)
        if not rule or rule.group(1) == "all":
            continue
        wildcards = re.search(r"^\s+wildcards: (.+)$", block, re.M)
        reason = re.search(r"^\s+reason: (.+)$", block, re.M)
        pairs = wildcards.group(1).split(", ") if wildcards else []
        jobs.append((rule.group(1), dict(p.split("=", 1) for p in pairs), reason.group(1) if reason else ""))
    return jobs


def dry_run(workdir, *args, config=None):
    """Job counts of a dry run; with config, under that config instead of the run's own."""
    configfile = "config.yaml"
    if config is not None:
        configfile = "changed.yaml"
        (workdir / configfile).write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", *args, configfile=configfile)
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """One fold of model a alone, then the same fold of model b, as real runs."""
    workdir = tmp_path_factory.mktemp("two_models")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TWO))
    first = snakemake(workdir, model_pt("a", 1))
    present = {p.relative_to(workdir).as_posix() for p in (workdir / "results").rglob("*")}
    second = snakemake(workdir, model_pt("b", 1))
    return SimpleNamespace(
        workdir=workdir, present_after_first=present,
        first=job_counts(first.stdout + first.stderr), second=job_counts(second.stdout + second.stderr),
    )


def test_one_fold_of_one_model_runs_only_what_it_needs(two_models):
    assert two_models.first["train"] == 1
    # Both caches: make_folds keeps the source's duplicate clusters in one fold, and source_duplicates
    # finds them (and the test leaks) in one pass over the training and test caches.
    assert two_models.first["cache_images"] == 2 and two_models.first["source_duplicates"] == 1
    assert not set(two_models.first) & (FROM_TRAINING_ON - {"train"})
    present = two_models.present_after_first
    assert model_pt("a", 1) in present
    assert model_pt("a", 0) not in present and "results/models/b" not in present
    assert "results/predictions" not in present


def test_another_model_reuses_everything_upstream(two_models):
    assert two_models.second == {"train": 1}


def test_changing_one_model_retrains_that_model_only(two_models):
    changed = copy.deepcopy(TWO)
    changed["models"]["b"]["lr"] = 0.01
    targets = [model_pt("a", 1), model_pt("b", 1)]
    assert job_counts(dry_run(two_models.workdir, *targets)) == {}
    out = dry_run(two_models.workdir, *targets, config=changed)
    assert [(rule, wc) for rule, wc, _ in planned_jobs(out)] == [("train", {"model": "b", "fold": "1"})]
    assert "Params have changed" in planned_jobs(out)[0][2]


def test_switching_compile_retrains_nothing(two_models):
    changed = copy.deepcopy(TWO)
    for model in changed["models"].values():
        model["compile"] = True
    targets = [model_pt("a", 1), model_pt("b", 1)]
    assert job_counts(dry_run(two_models.workdir, *targets, config=changed)) == {}
    # The same run does see a change that alters what is learnt (as in the test above).
    changed["models"]["a"]["lr"] = 0.01
    assert job_counts(dry_run(two_models.workdir, *targets, config=changed)) == {"train": 1}


def test_forcerun_thresholds_redoes_them_and_what_reads_them_only(demo_run):
    counts = job_counts(dry_run(demo_run, "--forcerun", "fit_thresholds"))
    assert THRESHOLDS_ON.items() <= counts.items()
    assert not set(counts) & (UPSTREAM_OF_TRAINING | BEFORE_THRESHOLDS)


def test_changing_the_threshold_method_reruns_what_forcerun_thresholds_does(demo_run):
    changed = copy.deepcopy(TINY)
    changed["ensembles"]["main"]["threshold"] = "global"
    forced = job_counts(dry_run(demo_run, "--forcerun", "fit_thresholds"))
    assert job_counts(dry_run(demo_run, config=changed)) == forced


def test_forcerun_train_redoes_every_fold_and_everything_after_it(demo_run):
    counts = job_counts(dry_run(demo_run, "--forcerun", "train"))
    assert counts["train"] == TINY["folds"]["n"] and counts["predict"] == TINY["folds"]["n"]
    assert FROM_TRAINING_ON <= set(counts)
    assert not set(counts) & UPSTREAM_OF_TRAINING


def test_until_stops_at_the_folds(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    everything = job_counts(dry_run(tmp_path))
    until = job_counts(dry_run(tmp_path, "--until", "make_folds"))
    assert FROM_TRAINING_ON <= set(everything)
    # The folds keep the source's duplicate clusters together, found in the image caches (source_duplicates).
    assert {"make_demo", "ingest", "cache_images", "source_duplicates", "make_folds"} <= set(until)
    assert not set(until) & (FROM_TRAINING_ON | {"channel_stats"})


def test_switching_the_tta_aggregate_recombines_views_without_running_the_model(demo_run):
    changed = copy.deepcopy(TINY)
    changed["ensembles"]["main"]["aggregate"] = "max"
    counts = job_counts(dry_run(demo_run, config=changed))
    assert counts.get("combine_views") == TINY["folds"]["n"]
    assert not set(counts) & {"train", "predict"}

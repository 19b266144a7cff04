"""Run the real Snakefile end to end on a tiny config, in a temporary directory."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, job_counts, snakemake, write_kaggle_source
from hpa.metrics import no_skill_macro_f1

pytestmark = pytest.mark.workflow

# demo_run (conftest): TINY run to completion, shared with tests/test_rerun.py and tests/test_slurm.py.


def test_demo_run_writes_a_submission_for_every_test_id(demo_run):
    test_ids = pd.read_csv(demo_run / "resources/demo/sample_submission.csv")["Id"]
    sub = pd.read_csv(demo_run / "results/submission/main.csv", dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["Id", "Predicted"]
    assert sorted(sub["Id"]) == sorted(test_ids)
    for predicted in sub["Predicted"]:
        classes = [int(c) for c in predicted.split()]
        assert classes == sorted(set(classes)) and all(0 <= c < 28 for c in classes)


def test_demo_run_thresholds_and_evaluation(demo_run):
    record = json.loads((demo_run / "results/thresholds/main.json").read_text())
    assert record["method"] == "per_class"
    assert len(record["thresholds"]) == 28 and all(0 <= t <= 1 for t in record["thresholds"])
    assert 0 < record["oof_macro_f1"] <= 1
    low, high = record["honest_macro_f1_interval"]
    assert low <= record["honest_macro_f1"] <= high and 0 < record["no_skill_macro_f1"] < 1
    evaluation = json.loads((demo_run / "results/evaluation/main.json").read_text())
    low, high = evaluation["test_macro_f1_interval"]
    assert low <= evaluation["test_macro_f1"] <= high
    truth = pd.read_csv(demo_run / "resources/demo/test_labels.csv", dtype=str, keep_default_na=False)
    assert evaluation["n_test_images"] == len(truth)
    y = np.zeros((len(truth), 28), bool)
    for i, target in enumerate(truth["Target"]):
        y[i, [int(c) for c in target.split()]] = True
    assert evaluation["test_no_skill_macro_f1"] == pytest.approx(no_skill_macro_f1(y), abs=1e-6)
    assert evaluation["test_minus_no_skill"]["difference"] == pytest.approx(
        evaluation["test_macro_f1"] - evaluation["test_no_skill_macro_f1"], abs=1e-5)
    comparison = pd.read_csv(demo_run / "results/evaluation/comparison.csv").set_index("ensemble")
    row = comparison.loc["main"]
    assert row["test_macro_f1"] == pytest.approx(evaluation["test_macro_f1"])
    assert row["test_low"] == pytest.approx(low) and row["test_no_skill"] == pytest.approx(
        evaluation["test_no_skill_macro_f1"])
    assert row["honest_low"] <= row["honest_macro_f1"] <= row["honest_high"]
    assert row["test_minus_best"] == 0 or row["minus_best_low"] <= row["test_minus_best"] <= row["minus_best_high"]
    folds = pd.read_csv(demo_run / "results/splits/folds.csv")
    kept = pd.read_csv(demo_run / "results/external/kept.csv")  # the mirror's kept external images
    assert len(folds) == 36 + len(kept) and set(folds["fold"]) == {0, 1}


def test_every_rule_left_a_log_and_a_benchmark(demo_run):
    """Every rule of the run's DAG (but the target rule) wrote logs/<rule>... and benchmarks/<rule>...."""
    rules = set(job_counts(snakemake(demo_run, "-n", "--forceall", "--quiet", "rules").stdout))
    assert {"make_demo", "train", "predict", "fit_thresholds", "compare_ensembles"} <= rules
    for rule in sorted(rules):
        for folder, ext in (("logs", "log"), ("benchmarks", "tsv")):
            found = list((demo_run / folder).glob(f"{rule}.{ext}")) + list((demo_run / folder / rule).rglob(f"*.{ext}"))
            assert found, f"rule {rule} left no {folder}/{rule}[...].{ext}"
    assert (demo_run / "logs/train/tiny/fold1.log").read_text().count("epoch 1") == 1


def test_rerun_after_completion_does_nothing(demo_run):
    result = snakemake(demo_run, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_real_config_lists_every_stage(tmp_path):
    """config/hpa.yaml plans the whole pipeline from the Kaggle files and the HPAv18 list alone."""
    write_kaggle_source(tmp_path / "resources/kaggle", {"a": "0", "b": "1 2", "c": "25"}, ["t"])
    (tmp_path / "resources/external").mkdir()
    (tmp_path / "resources/external/HPAv18RBGY_wodpl.csv").write_text("Id,Target\n10580_1610_C1_1,0 2\n")
    (tmp_path / "config.yaml").write_text((REPO / "config/hpa.yaml").read_text())
    out = snakemake(tmp_path, "-n", "--quiet", "rules").stdout
    for rule in ("download_external", "hash_images", "clean_external",
                 "ingest", "cache_images", "channel_stats", "make_folds", "train", "predict",
                 "blend", "fit_thresholds", "make_submission",
                 "count_labels", "mine_labels", "class_groups", "sampling_weights", "plot_labels"):
        assert rule in out
    assert "make_demo" not in out and "evaluate_test" not in out


def test_bad_labels_stop_the_run_naming_file_and_line(tmp_path):
    write_kaggle_source(tmp_path / "resources/kaggle", {"a": "0", "b": "31"}, ["t"])
    config = dict(TINY, source="kaggle", external={"use": False})  # else hash_images reads train.csv first
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/data/manifest.csv", check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/ingest.log").read_text()
    assert "train.csv, line 3 (Id b): class 31 is outside 0..27" in log

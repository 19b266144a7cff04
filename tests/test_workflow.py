"""Run the real Snakefile end to end on a tiny config, in a temporary directory."""

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, TINY, job_counts, snakemake, write_kaggle_source
from PIL import Image
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from hpa.classes import CHANNELS, HPA
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
    # Each row: the classes whose blended test probability reaches the ensemble's threshold.
    probs = pd.read_csv(demo_run / "results/ensembles/main/test.csv", dtype={"Id": str}).set_index("Id")
    thresholds = np.array(json.loads((demo_run / "results/thresholds/main.json").read_text())["thresholds"])
    reached = probs[[f"p{k}" for k in range(28)]].to_numpy() >= thresholds
    expected = pd.Series([" ".join(map(str, np.flatnonzero(row))) for row in reached], index=probs.index)
    assert sub.set_index("Id")["Predicted"].to_dict() == expected.reindex(sub["Id"]).fillna("").to_dict()
    assert sub["Predicted"].ne("").mean() > 0.5  # a trained model predicts something for most images


def test_demo_test_macro_f1_is_the_submission_scored_against_the_held_aside_labels(demo_run):
    """Recomputed with scikit-learn from the two files alone, not with the pipeline's scoring code."""
    truth = pd.read_csv(demo_run / "resources/demo/test_labels.csv", dtype=str, keep_default_na=False)
    sub = pd.read_csv(demo_run / "results/submission/main.csv", dtype=str, keep_default_na=False)
    predicted = truth[["Id"]].merge(sub, on="Id", how="left").fillna({"Predicted": ""})["Predicted"]
    binarizer = MultiLabelBinarizer(classes=list(range(28)))
    y_true = binarizer.fit_transform([[int(c) for c in t.split()] for t in truth["Target"]])
    y_pred = binarizer.transform([[int(c) for c in p.split()] for p in predicted])
    evaluation = json.loads((demo_run / "results/evaluation/main.json").read_text())
    expected = f1_score(y_true, y_pred, average="macro", zero_division=0)
    assert evaluation["test_macro_f1"] == pytest.approx(expected, abs=1e-6) and expected > 0


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
                 "ingest", "cache_images", "source_duplicates", "channel_stats", "make_folds", "train", "predict",
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
    assert "train.csv, line 3 (Id b): Target '31': '31' is neither a class name nor an index 0..27" in log


def test_a_timm_model_trains_in_the_workflow_and_predicts_new_images_of_any_format(demo_run, tmp_path):
    """A randomly initialised timm model trains one epoch per fold beside the demo run's, and its
    ensemble classifies a folder of PNGs, a 16-bit TIFF and a colour JPEG through predict_new."""
    workdir = tmp_path / "run"
    shutil.copytree(demo_run, workdir)  # keeps the mtimes: only the timm model's jobs run
    new = workdir / "new"
    new.mkdir()
    ids = pd.read_csv(workdir / "resources/demo/sample_submission.csv")["Id"][:3].tolist()
    tints = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
    for image_id in ids:
        for color in CHANNELS:
            plane = np.asarray(Image.open(workdir / f"resources/demo/test/{image_id}_{color}.png"))
            Image.fromarray(plane).save(new / f"{image_id}_{color}.png")
            if image_id == ids[0]:  # the same image as a 16-bit TIFF (v << 8: the shift rule gives v back)
                Image.fromarray(plane.astype(np.uint16) << 8).save(new / f"tiff16_{color}.tif")
            if image_id == ids[1]:  # and as the atlas's tinted colour JPEG
                Image.fromarray(plane[..., None] * np.array(tints[color], np.uint8)).save(
                    new / f"colour_{color}.jpg", quality=95)
    config = copy.deepcopy(TINY)
    config["models"]["timm"] = {"arch": "timm/resnet10t", "epochs": 1, "batch_size": 8}
    config["ensembles"]["timm"] = {"models": ["timm"], "tta": "flips"}
    config["new_images"] = "new"
    (workdir / "timm.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "results/new_images/timm.csv", configfile="timm.yaml")
    counts = job_counts(result.stdout + result.stderr)
    assert counts["train"] == TINY["folds"]["n"] and "cache_images" not in counts  # nothing upstream again
    ckpt = torch.load(workdir / "results/models/timm/fold0/model.pt")
    assert ckpt["config"]["model"]["arch"] == "timm/resnet10t" and ckpt["epoch"] == 1
    table = pd.read_csv(workdir / "results/new_images/timm.csv", dtype={"Id": str}).set_index("Id")
    assert set(table.index) == {*ids, "tiff16", "colour"} and table["ok"].all()
    probs = table[[f"p_{name}" for name in HPA.classes]]  # named by the checkpoints' classes
    # The demo's 8-bit train images leave bit_depth auto at the full 16-bit range: v << 8 gives v back.
    assert np.allclose(probs.loc["tiff16"], probs.loc[ids[0]], atol=1e-6)
    assert np.abs(probs.loc["colour"] - probs.loc[ids[1]]).max() < 0.05  # JPEG's loss, nothing more


def test_demo_run_labels_every_cell_and_writes_the_2021_submission(demo_run):
    from hpa.cells.encoding import parse_prediction_string
    from hpa.cells.masks import load_masks

    images = pd.read_csv(demo_run / "results/cells/images.csv", dtype={"Id": str}, keep_default_na=False)
    test_ids = pd.read_csv(demo_run / "resources/demo/sample_submission.csv")["Id"]
    assert sorted(images["Id"]) == sorted(test_ids) and (images["problem"] == "").all() and images["cells"].gt(0).all()
    cells = pd.read_csv(demo_run / "results/cells/cells.csv", dtype={"Id": str})
    scores = pd.read_csv(demo_run / "results/cells/main/cell_scores.csv", dtype={"Id": str}, keep_default_na=False)
    assert scores[["Id", "cell"]].equals(cells[["Id", "cell"]]) and len(scores) == images["cells"].sum()
    probs = pd.read_csv(demo_run / "results/ensembles/main/test.csv", dtype={"Id": str}).set_index("Id")
    p = [f"p{k}" for k in range(28)]
    # gated: each image's best cell per class keeps the image's probability, no cell exceeds it.
    best = scores.groupby("Id")[p].max()
    assert np.allclose(best.to_numpy(), probs.loc[best.index, p].to_numpy(), atol=1e-5)
    thresholds = np.array(json.loads((demo_run / "results/thresholds/main.json").read_text())["thresholds"])
    shown = scores[p].to_numpy() >= thresholds
    assert scores["labels"].tolist() == ["; ".join(HPA.classes[c] for c in np.flatnonzero(s)) for s in shown]
    sub = pd.read_csv(demo_run / "results/cells/main/submission_2021.csv", keep_default_na=False)
    assert list(sub.columns) == ["ID", "ImageWidth", "ImageHeight", "PredictionString"]
    row = sub.set_index("ID").loc[images["Id"].iloc[0]]
    mask = load_masks(demo_run / "results/cells/masks", images["Id"].iloc[0])
    triples = parse_prediction_string(row["PredictionString"], row["ImageHeight"], row["ImageWidth"])
    cell_of = {int(c): (mask == c) for c in np.unique(mask) if c}
    assert triples and all(any(np.array_equal(m, cm) for cm in cell_of.values()) for _, _, m in triples)
    # Its confidences are the cells' scores discounted by how whole each cell is (cells.partial_cells).
    own = scores[scores["Id"] == images["Id"].iloc[0]].set_index("cell")
    for label, confidence, cell_mask in triples:
        cell = next(c for c, cm in cell_of.items() if np.array_equal(cell_mask, cm))
        assert confidence == pytest.approx(own.loc[cell, f"p{label}"] * own.loc[cell, "whole"], rel=1e-3, abs=1e-5)
    assert scores["whole"].between(0, 1).all() and (scores["whole"] < 1).any() and (scores["whole"] == 1).any()
    pages = sorted(p.name for p in (demo_run / "results/cells/main/gallery").glob("*.jpg"))
    assert len(pages) == 28 and pages[2] == "02_Nucleoli.jpg"
    evaluation = json.loads((demo_run / "results/cells/main/cell_evaluation.json").read_text())
    assert evaluation["n_images"] == len(images) and set(evaluation["cell_map"]) == {
        "image", "map", "blend", "masked", "gated", "centre", "flattened", "whole"}
    assert set(evaluation["by_kind"]) == {"all", "agree", "vary"}
    for method in ("gated", "masked", "map"):
        s = evaluation["cell_map"][method]
        assert s["low"] <= s["map"] <= s["high"]
    assert 0 < evaluation["segmentation"]["masks"]["f1"] <= 1


def test_the_users_masks_replace_the_segmentation(demo_run, tmp_path):
    """The demo's true cells given as the user's masks: every later stage reads them, and the
    segmentation scores a perfect F1 against the truth they are."""
    workdir = tmp_path / "run"
    shutil.copytree(demo_run, workdir, symlinks=True)
    masks = "resources/demo/test_cells"
    result = snakemake(workdir, "--config", f"cells={{'masks': '{masks}'}}")
    ran = job_counts(result.stdout + result.stderr)
    assert {"segment_cells", "predict", "cell_labels"} <= set(ran) and "train" not in ran
    segmentation = json.loads((workdir / "results/cells/segmentation.json").read_text())
    assert segmentation["masks"]["f1"] == 1.0
    truth = pd.read_csv(workdir / "resources/demo/test_cells.csv", dtype={"Id": str})
    scores = pd.read_csv(workdir / "results/cells/main/cell_scores.csv", dtype={"Id": str}, keep_default_na=False)
    assert scores[["Id", "cell"]].sort_values(["Id", "cell"]).to_numpy().tolist() == \
        truth[["Id", "cell"]].sort_values(["Id", "cell"]).to_numpy().tolist()

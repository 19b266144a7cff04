"""The cell-level model (cells.model; issue 28): crops cut at the field's own resolution, a crop cache that
the training loop reads with each crop's image labels and fold, and the blend fitted out of fold."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpa.cells.cell_model import CellModel, fit_blend, read_folds, skill
from hpa.cells.crop_job import NpyRows, crop_images
from hpa.cells.crops import cell_crops, square_box
from hpa.cells.scores import alone_lookup, cell_scores, gated_ratios
from hpa.classes import CHANNELS
from hpa.data.images import BitDepth
from hpa.demo.render import render_field
from hpa.files import InputError
from hpa.runtime.job import fold_rows
from hpa.tables import probability_table
from hpa.training.job import oof_table


def two_cells(size=16):
    """A field whose left cell is bright in every channel, its neighbour on the right dim, with their mask."""
    mask = np.zeros((size, size), np.int32)
    mask[2:10, 1:7], mask[4:14, 7:15] = 1, 2
    field = np.zeros((4, size, size), np.uint8)
    field[:, mask == 1], field[:, mask == 2] = 200, 50
    return field, mask


def test_a_crop_holds_its_cell_alone_filling_a_square_around_its_box():
    field, mask = two_cells()
    ids, boxes, areas, crops = cell_crops(field, mask, size=8)  # cell 1's square is 8 px: not resized
    assert ids.tolist() == [1, 2] and crops.shape == (2, 4, 8, 8) and crops.dtype == np.uint8
    assert areas.tolist() == [48, 80] and boxes[0].tolist() == [1, 2, 7, 10]
    assert set(np.unique(crops[0])) == {0, 200}, "its square reaches into the neighbour, whose pixels are zeroed"
    assert (crops[0][:, :, 1:7] == 200).all() and (crops[0][:, :, [0, 7]] == 0).all()
    assert crops[1].max() == 50, "and the bright cell is not in its neighbour's crop"


def test_a_window_keeps_every_cell_at_the_fields_scale_and_pads_beyond_the_border_with_zeros():
    assert square_box((1, 2, 7, 10)) == (0, 2, 8)  # the longer side (8), centred on the box
    assert square_box((1, 2, 7, 10), window=12) == (-2, 0, 12)
    assert square_box((0, 0, 30, 20), window=12) == (0, -5, 30), "a cell wider than the window is not cut"
    field, mask = two_cells()
    _, _, _, tight = cell_crops(field, mask, size=12)
    _, _, _, window = cell_crops(field, mask, size=12, window=12)
    assert (tight[0] > 0).mean() > (window[0] > 0).mean() > 0, "in a window a cell keeps its size"
    sliver = np.zeros((16, 16), np.int32)
    sliver[0:2, 0:3] = 1  # a cell cut by the field's corner
    _, _, _, crop = cell_crops(np.full((1, 16, 16), 90, np.uint8), sliver, size=12, window=12)
    assert 0 < (crop[0, 0] > 0).mean() < 0.1 and crop[0, 0, -1, -1] == 0


def test_crop_rows_are_written_whole_or_not_at_all(tmp_path):
    rows = NpyRows(tmp_path / "c.npy", (2, 3))
    assert rows.append(np.ones((2, 2, 3))) == 0 and rows.append(np.full((1, 2, 3), 7)) == 2
    rows.finish()
    saved = np.load(tmp_path / "c.npy", mmap_mode="r")
    assert saved.shape == (3, 2, 3) and saved.dtype == np.uint8 and saved[2].min() == 7
    assert [p.name for p in tmp_path.iterdir()] == ["c.npy"]
    broken = NpyRows(tmp_path / "d.npy", (2, 3))
    broken.append(np.ones((1, 2, 3)))
    broken.discard()
    assert not (tmp_path / "d.npy").exists() and [p.name for p in tmp_path.iterdir()] == ["c.npy"]


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    """Six demo fields at 96 px in the Kaggle layout, and their manifest rows."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(5)
    rows = []
    for k in range(6):
        labels = {0, int(rng.integers(1, 28))}
        image = render_field(labels, 96, rng)
        for c, channel in enumerate(CHANNELS):
            Image.fromarray(image[c]).save(root / f"im{k}_{channel}.png")
        rows.append({"Id": f"im{k}", "image_dir": str(root), "split": "train",
                     "Target": " ".join(map(str, sorted(labels)))})
    return root, pd.DataFrame(rows)


def cut(tmp_path, manifest, **kwargs):
    return crop_images(manifest, tmp_path / "train.npy", tmp_path / "train.csv", channels=CHANNELS, nucleus="blue",
                       body=["red", "yellow"], depth=BitDepth(), size=24, **kwargs)


def test_training_fields_are_segmented_and_every_cell_becomes_a_row_of_the_crop_cache(fields, tmp_path):
    _, manifest = fields
    index = cut(tmp_path, manifest, workers=2)
    crops = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert crops.shape == (len(index), 4, 24, 24) and index["row"].tolist() == list(range(len(index)))
    assert set(index["Id"]) == set(manifest["Id"]) and index["ok"].all()
    assert (index.groupby("Id")["cell"].nunique() >= 2).all()
    assert pd.read_csv(tmp_path / "train.csv", dtype={"Id": str}).equals(index.astype({"ok": bool}))


def test_the_users_masks_are_cut_where_they_are_and_a_broken_field_is_skipped_by_name(fields, tmp_path):
    root, manifest = fields
    own = tmp_path / "own"
    own.mkdir()
    mask = np.zeros((96, 96), np.uint16)
    mask[10:40, 10:40], mask[50:90, 50:90] = 1, 2
    Image.fromarray(mask).save(own / "im0.png")
    index = cut(tmp_path / "a", manifest, user_masks=own)
    assert index.loc[index["Id"] == "im0", "cell"].tolist() == [1, 2], "the user's mask, not the segmentation"
    (root / "im5_green.png").write_bytes(b"not a png")
    try:
        index = cut(tmp_path / "b", manifest, max_rejected_fraction=0.2)
        assert "im5" not in set(index["Id"]) and len(set(index["Id"])) == 5
        with pytest.raises(InputError, match=r"1 of 6 images could not be cut.*im5"):
            cut(tmp_path / "c", manifest)
        assert not (tmp_path / "c" / "train.npy").exists() and not list((tmp_path / "c").glob(".*"))
    finally:
        Image.fromarray(render_field({0}, 96, np.random.default_rng(0))[1]).save(root / "im5_green.png")


def test_each_crop_takes_its_images_fold_and_labels_and_an_image_cache_still_has_one_row_per_image(tmp_path):
    index = pd.DataFrame({"Id": ["a", "a", "b", "c", "c"], "cell": [1, 2, 1, 1, 3], "row": range(5), "ok": True})
    folds = pd.DataFrame({"Id": ["a", "b", "c"], "fold": [0, 1, 0]})
    labels = pd.DataFrame({"Id": ["a", "b", "c"], "Target": ["0", "1", "0 2"]})
    (train_rows, y_train), (val_rows, y_val, val_keys) = fold_rows(index, folds, labels, 1, 3)
    assert train_rows.tolist() == [0, 1, 3, 4] and y_train[:, 2].tolist() == [0, 0, 1, 1]
    assert val_rows.tolist() == [2] and val_keys["Id"].tolist() == ["b"] and y_val.tolist() == [[0, 1, 0]]
    table = oof_table(val_keys, np.array([[0.1, 0.9, 0.2]]))
    assert table.columns[:2].tolist() == ["Id", "cell"] and table["cell"].tolist() == [1]
    with pytest.raises(pd.errors.MergeError):
        fold_rows(index.drop(columns="cell"), folds, labels, 1, 3)


def test_skill_is_average_precision_above_the_prevalence_and_zero_without_a_positive():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    perfect = np.array([[0.9, 0.5], [0.1, 0.5], [0.8, 0.5], [0.2, 0.5]])
    assert skill(perfect, y).tolist() == [1.0, 0.0]
    assert skill(1 - perfect, y)[0] == 0.0, "worse than the prevalence counts as none"
    assert 0 < skill(np.array([[0.9], [0.8], [0.1], [0.2]]), y[:, :1])[0] < 1


def test_the_cell_model_has_as_much_say_as_its_pooled_skill_beside_the_image_models():
    labels = pd.DataFrame({"Id": list("abcd"), "Target": ["0", "0 1", "1", ""]})
    # Cells: image a's second cell and b's first show class 0 clearly; the cells see class 1 not at all.
    oof = (np.array(list("aabbccdd")), np.array([1, 2, 1, 2, 1, 2, 1, 2]),
           np.array([[0.2, 0.5], [0.9, 0.5], [0.8, 0.5], [0.1, 0.5], [0.1, 0.5], [0.2, 0.5], [0.1, 0.5], [0.3, 0.5]]))
    image = probability_table(list("abcd"), np.array([[0.6, 0.2], [0.7, 0.9], [0.65, 0.8], [0.1, 0.1]]))
    weight, table = fit_blend(oof, image, labels, 2)
    assert table["skill_cells"].tolist() == [1.0, 0.0] and table["skill_image"].tolist()[1] == 1.0
    assert table["skill_image"][0] == pytest.approx(2 / 3, abs=1e-3)  # AP 5/6 at a prevalence of 1/2
    assert weight[0] == pytest.approx(0.6) and weight[1] == 0.0
    with pytest.raises(ValueError, match="share no image"):
        fit_blend(oof, probability_table(["x"], np.zeros((1, 2))), labels, 2)


def test_gated_blends_the_cell_model_by_its_weight_and_keeps_its_own_score_where_the_model_saw_no_cell():
    mask = np.zeros((8, 8), np.int32)
    mask[:, :4], mask[:, 4:] = 1, 2
    probs, thresholds = np.array([0.8, 0.3]), np.array([0.5, 0.5])
    alone = np.array([[0.9, 0.1], [0.2, 0.4]])
    q = np.array([[0.1, 0.6], [np.nan, 0.2]])
    own = probs * gated_ratios(alone, thresholds)

    def scored(weight):
        return cell_scores(probs, mask, method="gated", alone=alone, thresholds=thresholds,
                           cell_model=(q, np.asarray(weight, float))).scores

    assert np.allclose(scored([0, 0]), own)
    assert np.allclose(scored([1, 1])[0], q[0]) and np.allclose(scored([1, 1])[1, 0], own[1, 0])
    assert np.allclose(scored([0.25, 0.5])[0], [0.75 * own[0, 0] + 0.25 * 0.1, 0.5 * own[0, 1] + 0.5 * 0.6])
    model = CellModel(np.array([0.5, 0.5]), alone_lookup(np.array(["x", "x"]), np.array([2, 1]), q))
    scores, weight = model.evidence("x", np.array([1, 2, 3]))
    assert np.allclose(scores[:2], q[::-1], equal_nan=True) and np.isnan(scores[2]).all()


def test_the_folds_test_scores_are_averaged_and_must_be_of_the_same_cells(tmp_path):
    oof_paths, test_paths = [], []
    for fold in (0, 1):
        oof = probability_table([f"i{fold}"], np.array([[0.5, 0.5]]))
        oof.insert(1, "cell", [1])
        oof.to_csv(tmp_path / f"oof{fold}.csv", index=False)
        np.savez(tmp_path / f"test{fold}.npz", ids=np.array(["t", "t"]), cells=np.array([1, 2]),
                 probs=np.full((2, 2), 0.2 + 0.4 * fold, np.float32))
        oof_paths.append(tmp_path / f"oof{fold}.csv")
        test_paths.append(tmp_path / f"test{fold}.npz")
    (ids, cells, probs), (test_ids, test_cells, test_probs) = read_folds(oof_paths, test_paths)
    assert ids.tolist() == ["i0", "i1"] and cells.tolist() == [1, 1]
    assert test_ids.tolist() == ["t", "t"] and np.allclose(test_probs, 0.4)
    np.savez(tmp_path / "test1.npz", ids=np.array(["t"]), cells=np.array([1]), probs=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="other cells"):
        read_folds(oof_paths, test_paths)


# The cell model inside the real workflow (TINY, its cells cut at 16 px, one epoch).
CELL_MODEL = {"crop": 16, "tta": "flips", "train": {"arch": "branchnet", "epochs": 1, "batch_size": 8}}


@pytest.fixture(scope="module")
def cell_model_run(tmp_path_factory):
    import copy

    import yaml
    from conftest import TINY, snakemake

    workdir = tmp_path_factory.mktemp("cell_model_run")
    config = copy.deepcopy(TINY) | {"cells": {"model": CELL_MODEL}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/cells/main/cell_evaluation.csv", "results/cells/main/submission_2021.csv")
    return workdir


def test_the_test_crops_are_the_submissions_cells_and_the_training_crops_every_training_images(cell_model_run):
    results = cell_model_run / "results"
    test = pd.read_csv(results / "cells/crops/test.csv", dtype={"Id": str})
    scored = pd.read_csv(results / "cells/cells.csv", dtype={"Id": str})
    assert test[["Id", "cell"]].equals(scored[["Id", "cell"]]), "the cells segment_cells found, no other"
    train = pd.read_csv(results / "cells/crops/train.csv", dtype={"Id": str})
    folds = pd.read_csv(results / "splits/folds.csv", dtype={"Id": str})
    assert set(train["Id"]) == set(folds["Id"]), "every training image (the external ones too) is cut into cells"
    for split, table in (("train", train), ("test", test)):
        assert np.load(results / f"cells/crops/{split}.npy", mmap_mode="r").shape == (len(table), 4, 16, 16)


def test_each_folds_cell_model_is_a_checkpoint_of_the_loop_and_scores_its_own_out_of_fold_cells(cell_model_run):
    from hpa.runtime.checkpoint import read_checkpoint

    results = cell_model_run / "results"
    folds = pd.read_csv(results / "splits/folds.csv", dtype={"Id": str})
    train = pd.read_csv(results / "cells/crops/train.csv", dtype={"Id": str})
    for fold in (0, 1):
        saved = read_checkpoint(results / f"cells/model/fold{fold}/model.pt")
        assert saved["config"]["fold"] == fold and saved["config"]["model"]["arch"] == "branchnet"
        assert saved["config"]["image_size"] == 16
        oof = pd.read_csv(results / f"cells/model/fold{fold}/oof.csv", dtype={"Id": str})
        held_out = set(folds.loc[folds["fold"] == fold, "Id"])
        assert set(oof["Id"]) == held_out and len(oof) == train["Id"].isin(held_out).sum()
        with np.load(results / f"cells/model/fold{fold}/cells.npz") as cells:
            assert cells["probs"].shape == (len(pd.read_csv(results / "cells/crops/test.csv")), 28)


def test_the_blend_is_fitted_per_class_and_scored_against_its_parts(cell_model_run):
    results = cell_model_run / "results/cells/main"
    fit = pd.read_csv(results / "cell_model.csv")
    assert len(fit) == 28 and fit["weight"].between(0, 1).all()
    assert (fit.loc[fit["positives"] == 0, "weight"] == 0).all()
    table = pd.read_csv(results / "cell_evaluation.csv")
    parts = table[table["measure"].str.contains("with the cell model")]
    assert set(parts["baseline"]) == {"gated from the image models alone (no cell model)",
                                      "the cell model's probabilities alone (weight 1)"}


def test_the_cell_models_outputs_speak_the_glossarys_words(cell_model_run):
    import json

    from test_glossary import glossary, glossed

    results = cell_model_run / "results/cells"
    record = json.loads((results / "main/cell_evaluation.json").read_text())
    names = set(pd.read_csv(results / "main/cell_model.csv", nrows=0).columns) | set(record) | set(record["cell_map"])
    names |= set(pd.read_csv(results / "crops/train.csv", nrows=0).columns)
    missing = sorted(n for n in names if not glossed(n, glossary()))
    assert not missing, f"README.md's glossary lacks {missing}"


def test_without_a_cell_model_no_cell_is_cut(tmp_path):
    import yaml
    from conftest import TINY, job_counts, snakemake

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    counts = job_counts(snakemake(tmp_path, "-n").stdout)
    assert counts["cell_labels"] == 1 and not {"cell_crops", "train_cell_model", "predict_cell_model"} & set(counts)

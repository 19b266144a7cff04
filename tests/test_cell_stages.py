"""The per-cell stages' jobs: the model's frame, segmenting a folder (or reading the user's masks),
the ensemble's maps, labelling cells, scoring them against a cell truth and drawing the gallery."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpa.cells.encoding import parse_prediction_string
from hpa.cells.evaluate_job import evaluate_cells, evaluate_segmentation, evaluation_table
from hpa.cells.frames import model_frame, native_map, peak_in_image
from hpa.cells.gallery import PANEL, STRIP, composite, file_name, page, pick, protein_channel, protein_panel, row_image
from hpa.cells.labels_job import ensemble_maps, label_cells
from hpa.cells.masks import load_masks
from hpa.cells.scores import alone_lookup, cell_scores, ensemble_cells
from hpa.cells.segment_job import segment_images
from hpa.cells.truth import read_cell_labels
from hpa.classes import CHANNELS, HPA
from hpa.config.checks import cell_settings
from hpa.data.images import BitDepth, square
from hpa.demo.render import render_field
from hpa.demo.truth import write_cells_table, write_truth
from hpa.files import InputError


# The model's frame.
@pytest.mark.parametrize("fit", ["pad", "crop"])
@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (7, 10), (10, 7)])
def test_model_frame_is_the_caches_square_and_peaks_come_back_to_their_pixel(fit, shape):
    labels = np.arange(1, shape[0] * shape[1] + 1).reshape(shape)
    frame = model_frame(labels, fit)
    assert np.array_equal(frame, square(labels, fit))
    side = frame.shape[0]
    for i in range(side):  # a map at the frame's own resolution: the peak is one frame pixel
        for j in range(side):
            grid = np.zeros((side, side))
            grid[i, j] = 1
            peak = peak_in_image(grid, shape, fit)
            if frame[i, j] == 0:  # a pad's border is off the image
                assert peak is None
            else:
                assert labels[peak] == frame[i, j]


def test_stretched_and_square_fields_map_straight_and_native_maps_cover_the_image():
    grid = np.zeros((2, 2))
    grid[1, 0] = 1
    assert peak_in_image(grid, (8, 12), "stretch") == (6, 3)
    assert peak_in_image(grid, (8, 8), "square") == (6, 2)
    assert native_map(grid, (8, 12), "stretch").shape == (8, 12)
    padded = native_map(np.ones((4, 4)), (6, 12), "pad")
    assert padded.shape == (6, 12) and np.allclose(padded, 1)
    cropped = native_map(np.ones((4, 4)), (6, 12), "crop")
    assert cropped.shape == (6, 12) and np.allclose(cropped[:, 3:9], 1) and not cropped[:, :3].any()
    with pytest.raises(ValueError, match="fit 'zoom'"):
        model_frame(np.zeros((4, 6), int), "zoom")


def test_a_cell_a_crop_cut_away_keeps_its_images_probabilities():
    mask = np.zeros((10, 20), np.int32)
    mask[:, :4] = 1  # left of the central 10 x 10 crop
    mask[2:8, 6:10] = 2
    mask[2:8, 10:14] = 3
    maps = np.zeros((1, 2, 2))
    maps[0, :, 0] = 1  # the crop's left half: cell 2
    scores = cell_scores(np.array([0.8]), mask, maps, "map", fit="crop").scores[:, 0]
    assert scores[0] == pytest.approx(0.8) and scores[1] == pytest.approx(0.8) and scores[2] < 0.8


# Segmenting a folder of test images, or reading the user's masks.
@pytest.fixture(scope="module")
def truth_folder(tmp_path_factory):
    """Eight demo test fields at 96 px in the Kaggle layout, their cell truth beside them."""
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(11)
    rows, manifest = [], []
    for k in range(8):
        labels = {int(rng.integers(0, 28)), 25 if k % 2 else 0}
        image, truth = render_field(labels, 96, rng, truth=True)
        image_id = f"im{k}"
        (root / "test").mkdir(exist_ok=True)
        for c, channel in enumerate(CHANNELS):
            Image.fromarray(image[c]).save(root / "test" / f"{image_id}_{channel}.png")
        rows += write_truth(root, image_id, truth)
        manifest.append({"Id": image_id, "image_dir": str(root / "test"), "split": "test",
                         "Target": " ".join(map(str, sorted(labels)))})
    write_cells_table(rows, root / "test_cells.csv")
    return root, pd.DataFrame(manifest)


def segmented(tmp_path, manifest, **kwargs):
    images = segment_images(manifest, tmp_path / "masks", tmp_path / "cells.csv", tmp_path / "images.csv",
                            channels=CHANNELS, nucleus="blue", body=["red", "yellow"], depth=BitDepth(), **kwargs)
    return images, pd.read_csv(tmp_path / "cells.csv", dtype={"Id": str})


def test_segmenting_writes_a_mask_per_image_and_a_row_per_cell(truth_folder, tmp_path):
    root, manifest = truth_folder
    images, cells = segmented(tmp_path, manifest, workers=2)
    assert images["Id"].tolist() == manifest["Id"].tolist() and (images["problem"].fillna("") == "").all()
    for row in images.itertuples():
        mask = load_masks(tmp_path / "masks", row.Id, (96, 96))
        assert mask.max() == row.cells == (cells["Id"] == row.Id).sum() > 0
    assert (cells["x1"] > cells["x0"]).all() and (cells["area"] > 0).all()
    assert (images[["small_cells", "holey_cells"]] == 0).all().all(), "whole cells: no flag"
    assert (images["border_cells"] > 0).any() and (images["border_cells"] <= images["cells"]).all()
    result = evaluate_segmentation(truth_dir=root, images=images, masks_dir=tmp_path / "masks", manifest=manifest,
                                   channels=CHANNELS, nucleus="blue", depth=BitDepth(), n_classes=28, n_boot=50)
    assert result["n_images"] == 8 and 0.5 < result["masks"]["f1"] <= 1
    assert result["masks"]["low"] <= result["masks"]["f1"] <= result["masks"]["high"]
    assert result["difference"]["difference"] == pytest.approx(result["masks"]["f1"] - result["disk_baseline"]["f1"])


def test_the_users_masks_replace_the_segmentation_and_a_broken_one_is_skipped_by_name(truth_folder, tmp_path):
    root, manifest = truth_folder
    images, _ = segmented(tmp_path, manifest, masks=root / "test_cells", max_rejected_fraction=0.2)
    assert (images["cells"] > 0).all()
    assert (images["small_cells"] == -1).all(), "the user's masks come without nuclei: not known"
    for image_id in manifest["Id"]:  # the truth as the user's masks: copied as they are
        assert np.array_equal(load_masks(tmp_path / "masks", image_id), load_masks(root / "test_cells", image_id))
    own = tmp_path / "own"
    own.mkdir()
    for image_id in manifest["Id"][1:]:
        Image.open(root / "test_cells" / f"{image_id}.png").save(own / f"{image_id}.png")
    images, cells = segmented(tmp_path / "b", manifest, masks=own, max_rejected_fraction=0.2)
    problem = images.set_index("Id").loc["im0", "problem"]
    assert "no mask for image im0" in problem and "im0" not in set(cells["Id"])
    Image.fromarray(np.zeros((40, 40), np.uint16)).save(own / "im0.png")
    with pytest.raises(InputError, match=r"1 of 8 test images have no usable mask.*mask is 40x40 px"):
        segmented(tmp_path / "c", manifest, masks=own, max_rejected_fraction=0.1)


# The ensemble's maps and the cells' labels.
def test_ensemble_maps_give_each_member_an_equal_say_at_the_finest_grid(tmp_path):
    ids = np.array(["a", "b"])
    big = np.zeros((2, 1, 2, 2), np.float16)
    big[:, 0, 0, 0] = 100  # top-left, in large units
    fine = np.zeros((2, 1, 4, 4), np.float16)
    fine[:, 0, 3, 3] = 0.01  # bottom-right, in small units
    np.savez(tmp_path / "a.npz", ids=ids, maps=big)
    np.savez(tmp_path / "b.npz", ids=ids, maps=fine)
    got_ids, maps = ensemble_maps([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert got_ids.tolist() == ["a", "b"] and maps.shape == (2, 1, 4, 4)
    assert maps[0, 0, 0, 0] == pytest.approx(0.5, abs=0.01) and maps[0, 0, 3, 3] == pytest.approx(0.5, abs=0.01)
    np.savez(tmp_path / "c.npz", ids=np.array(["b", "a"]), maps=big)
    with pytest.raises(ValueError, match="other test images"):
        ensemble_maps([tmp_path / "a.npz", tmp_path / "c.npz"])


def test_cells_are_labelled_by_the_thresholds_and_the_submission_decodes_to_the_masks(tmp_path):
    mask = np.zeros((20, 30), np.int32)
    mask[:10, :10], mask[10:, 20:] = 1, 2
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "x.png")
    maps = np.zeros((1, 2, 2, 2), np.float16)
    maps[0, 0, 0, 0] = 1  # class 0 top-left: cell 1
    images = pd.DataFrame([{"Id": "x", "width": 30, "height": 20, "cells": 2, "problem": ""},
                           {"Id": "gone", "width": 8, "height": 8, "cells": 0, "problem": "gone: unreadable"}])
    probs = pd.DataFrame({"Id": ["x", "gone"], "p0": [0.9, 0.5], "p1": [0.6, 0.1]})
    scores, sub = label_cells(images=images, masks_dir=tmp_path, probs=probs, map_ids=np.array(["x"]), maps=maps,
                              fits={"x": "pad"}, thresholds=np.array([0.5, 0.5]), classes=("Nucleoplasm", "Cytosol"),
                              method="map", weight=0.5, min_score=0.05)
    assert scores["cell"].tolist() == [1, 2] and scores["labels"].tolist() == ["Nucleoplasm; Cytosol", "Cytosol"]
    assert scores.loc[0, "p0"] == pytest.approx(0.9) and scores.loc[1, "p0"] < 0.45
    assert sub["ID"].tolist() == ["x", "gone"] and sub.loc[1, "PredictionString"] == ""
    triples = parse_prediction_string(sub.loc[0, "PredictionString"], 20, 30)
    assert {(c, round(s, 3)) for c, s, _ in triples} >= {(0, 0.9), (1, 0.6)}
    assert all(np.array_equal(m, mask == (1 if m[0, 0] else 2)) for _, _, m in triples)


def test_cells_alone_take_their_share_of_the_images_probability(tmp_path):
    mask = np.zeros((20, 30), np.int32)
    mask[:10, :10], mask[10:, 20:], mask[0:2, 28:30] = 1, 2, 5
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "x.png")
    for k, bump in enumerate((0.0, 0.2)):  # two members, cells in the same order; cell 5 never shown alone
        np.savez(tmp_path / f"m{k}.npz", ids=np.array(["x", "x"]), cells=np.array([2, 1]),
                 probs=np.array([[0.1 + bump, 0.5], [0.8 - bump, 0.0]], np.float32))
    ids, cells, probs = ensemble_cells([tmp_path / "m0.npz", tmp_path / "m1.npz"])
    assert np.allclose(probs, [[0.2, 0.5], [0.7, 0.0]])
    images = pd.DataFrame([{"Id": "x", "width": 30, "height": 20, "cells": 3, "problem": ""}])
    probs_table = pd.DataFrame({"Id": ["x"], "p0": [0.9], "p1": [0.4]})
    scores, _ = label_cells(images=images, masks_dir=tmp_path, probs=probs_table, map_ids=np.array([]), maps=None,
                            fits={}, thresholds=np.array([0.5, 0.3]), classes=("a", "b"), method="masked", weight=0.5,
                            min_score=0.0, alone=alone_lookup(ids, cells, probs))
    got = scores.set_index("cell")[["p0", "p1"]].to_numpy()
    assert np.allclose(got, [[0.9, 0.0], [0.9 * 0.2 / 0.7, 0.4], [0.9, 0.4]])  # cells 1, 2, 5 (unseen: its image's)
    assert scores["labels"].tolist() == ["a", "b", "a; b"]
    np.savez(tmp_path / "m2.npz", ids=np.array(["x"]), cells=np.array([1]), probs=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="other cells"):
        ensemble_cells([tmp_path / "m0.npz", tmp_path / "m2.npz"])


# Scoring against the truth, and the pictures.
def test_true_probabilities_and_true_maps_beat_the_no_map_baseline(truth_folder, tmp_path):
    root, manifest = truth_folder
    images, _ = segmented(tmp_path, manifest, masks=root / "test_cells")
    truth = manifest.set_index("Id")["Target"]
    probs = pd.DataFrame([{"Id": i, **{f"p{c}": float(str(c) in truth[i].split()) for c in range(28)}}
                          for i in manifest["Id"]])
    from hpa.cells.truth import regions_of

    maps = np.zeros((8, 28, 96, 96), np.float16)  # oracle maps: each class's drawn region
    for k, image_id in enumerate(manifest["Id"]):
        for c, region in regions_of(root, image_id).items():
            maps[k, c] = region
    cells = read_cell_labels(root / "test_cells.csv", 28)  # oracle cells alone: each true cell's own labels
    rows = [(i, c, [float(k in labels) for k in range(28)]) for i, by_cell in cells.items() for c, labels in by_cell.items()]
    alone = alone_lookup(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
    proteins = {i: np.asarray(Image.open(root / "test" / f"{i}_green.png")) for i in manifest["Id"]}
    result = evaluate_cells(truth_dir=root, images=images, masks_dir=tmp_path / "masks", probs=probs,
                            map_ids=manifest["Id"].to_numpy(), maps=maps, fits={}, n_classes=28, weight=0.5,
                            thresholds=np.full(28, 0.5), proteins=proteins, alone=alone, partial="keep", n_boot=50)
    assert result["n_images"] == 8
    scores = {m: result["cell_map"][m]["map"] for m in ("image", "centre", "map", "masked", "gated")}
    assert scores["masked"] == pytest.approx(1.0) == scores["gated"]
    assert scores["map"] > max(scores["image"], scores["centre"])
    assert result["gain_over_centre"]["map"]["difference"] == pytest.approx(scores["map"] - scores["centre"])
    assert result["pointing_model"]["all"]["hit"] == 1.0 > result["pointing_model"]["all"]["chance"]
    assert result["pointing"]["all"]["hit"] > result["pointing"]["all"]["chance"]
    by_kind = result["by_kind"]
    assert by_kind["agree"]["n_images"] + by_kind["vary"]["n_images"] == 8
    table = evaluation_table(None, result, HPA.classes)
    parts = sum(1 for k in ("all", "agree", "vary") if by_kind[k]["n_images"])
    assert table["measure"].str.startswith("per-cell mAP").sum() == 9 * parts  # 4 methods x 2 baselines, flattened
    assert table["measure"].str.contains("pointing game, located maps: all classes").any()


def test_the_protein_panel_stretches_a_faint_channel_per_field():
    yy, xx = np.mgrid[:40, :40]
    faint = 20 + 49 * (((yy - 20) ** 2 + (xx - 20) ** 2) < 25)  # nucleoli peaking at 69 of 255
    panel = protein_panel(faint.astype(np.uint8))
    assert panel.shape == (40, 40, 3) and panel[20, 20, 0] == 255 and panel[0, 0, 0] == 0
    assert protein_channel(HPA) == "green"


def test_a_map_that_carries_nothing_says_so():
    planes = {c: np.random.default_rng(0).integers(0, 255, (30, 40)).astype(np.uint8) for c in CHANNELS}
    colour, mask = composite(planes, HPA.rgb), np.ones((30, 40), np.int32)
    protein = protein_panel(planes["green"])
    empty = np.asarray(row_image(protein, colour, np.zeros((2, 2)), "pad", mask, {}, set(), "fn"))
    shown = np.asarray(row_image(protein, colour, np.eye(2), "pad", mask, {}, set(), "fn"))
    box = (slice(STRIP, None), slice(2 * PANEL, 3 * PANEL))
    assert empty[box].std() < 0.5 * shown[box].std(), "a flat panel with its words, not the picture dimmed again"
    assert (empty[box] > 200).any(), "the words 'no map' are written on it"


def test_gallery_picks_and_draws():
    probs = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    truth = np.array([True, False, True, True, False])
    kinds = pick(probs, probs >= 0.5, truth, 1)
    assert kinds == [("tp", 0), ("fp", 1), ("fn", 3)]
    assert pick(probs, probs >= 0.5, None, 2) == [("top", 0), ("top", 1)]
    planes = {c: np.full((30, 40), 100, np.uint8) for c in CHANNELS}
    colour = composite(planes, HPA.rgb)
    assert colour.shape == (30, 40, 3) and colour[0, 0].tolist() == [150, 150, 100]
    mask = np.zeros((30, 40), np.int32)
    mask[5:15, 5:15] = 1
    protein = protein_panel(planes["green"])
    row = row_image(protein, colour, np.eye(2), "pad", mask, {1: 0.9}, {1}, "true positive")
    sheet = page("0 Nucleoplasm", [row, row])
    assert sheet.width == row.width and sheet.height > 2 * row.height
    assert row.width == 4 * PANEL, "protein alone, composite, map, cells"
    assert file_name(7, "Golgi apparatus") == "07_Golgi_apparatus.jpg"


# Settings.
def test_cell_settings_resolve_the_atlas_stains_and_refuse_others_by_name():
    config = {"source": "kaggle", "demo": {"dir": "x"},
              "cells": {"enabled": True, "masks": None, "nucleus_channel": None, "body_channels": None,
                        "truth": None}}
    resolved, warnings = cell_settings(config, HPA)
    assert resolved["nucleus_channel"] == "blue" and resolved["body_channels"] == ["red", "yellow"] and not warnings
    assert resolved["partial_cells"] == "discount"  # the pipeline's own segmentation: partial cells discounted
    own = config | {"cells": config["cells"] | {"masks": str(Path(__file__).parent)}}
    assert cell_settings(own, HPA)[0]["partial_cells"] == "keep"  # the user's masks are the cells that count
    asked = config | {"cells": config["cells"] | {"partial_cells": "keep"}}
    assert cell_settings(asked, HPA)[0]["partial_cells"] == "keep"
    from hpa.classes import Vocabulary

    screen = Vocabulary(tuple("abc"), ("dapi", "protein", "tubulin"), {"blue": "dapi"})
    # Not asked for: the per-cell stages are off, and the warning says how to turn them on.
    assert cell_settings(config, screen) == (None, [
        "cells.nucleus_channel: the channels (dapi, protein, tubulin) have no 'blue', so the per-cell stages "
        "are off; set cells.nucleus_channel (e.g. dapi) to turn them on"])
    asked = {"cells": {"method": "map"}}
    with pytest.raises(ValueError, match="cells.nucleus_channel: the channels .* have no 'blue'; name the stain"):
        cell_settings(config, screen, asked)
    config["cells"] |= {"nucleus_channel": "dapi"}
    with pytest.raises(ValueError, match="cells.body_channels: the channels .* have no 'red' or 'yellow'"):
        cell_settings(config, screen, asked)
    config["cells"] |= {"body_channels": ["tubulin", "gfp"]}
    with pytest.raises(ValueError, match=r"\['gfp'\] are not channels"):
        cell_settings(config, screen)
    config["cells"] |= {"body_channels": ["tubulin"], "masks": "/nonexistent"}
    with pytest.raises(ValueError, match="cells.masks: /nonexistent is not a folder"):
        cell_settings(config, screen)
    config |= {"source": "demo"}
    config["cells"] |= {"masks": None}
    assert cell_settings(config, screen)[0]["truth"] == "x"  # the demo's own truth
    config["cells"] |= {"enabled": False}
    assert cell_settings(config, screen) == (None, [])

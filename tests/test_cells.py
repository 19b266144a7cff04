"""Cells: the embedded segmentation on demo fields, matched-cell F1 on hand-made masks, user masks."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpa.cells.masks import load_masks
from hpa.cells.segment import disk_cells, fill_holes, image_flags, one_cell, segment
from hpa.cells.segment_metrics import (
    cell_counts,
    iou_matrix,
    match_cells,
    matched_f1,
    matched_f1_with_interval,
    paired_f1_difference,
)
from hpa.cells.truth import read_cell_labels, regions_of
from hpa.classes import CHANNELS
from hpa.demo.render import render_field
from hpa.demo.screen import LAB_CLASSES, make_screen
from hpa.files import InputError

BLUE, BODY = CHANNELS.index("blue"), [CHANNELS.index("red"), CHANNELS.index("yellow")]


def squares(*boxes, shape=(40, 40)):
    """A label image with cell k + 1 filling boxes[k] = (top, left, height, width)."""
    mask = np.zeros(shape, np.int32)
    for k, (top, left, h, w) in enumerate(boxes):
        mask[top:top + h, left:left + w] = k + 1
    return mask


TRUE = squares((0, 0, 10, 10), (0, 20, 10, 10), (20, 0, 10, 20))


def test_perfect_segmentation_scores_one_whatever_the_numbering():
    renumbered = np.array([0, 7, 3, 12])[TRUE]
    assert cell_counts(TRUE, renumbered) == (3, 0, 0)
    assert matched_f1([cell_counts(TRUE, renumbered)])["f1"] == 1.0
    assert sorted(match_cells(TRUE, renumbered)) == [(1, 7, 1.0), (2, 3, 1.0), (3, 12, 1.0)]


def test_iou_comes_from_the_joint_histogram():
    shifted = squares((0, 2, 10, 10))  # 8 of 10 columns shared: IoU 80 / 120
    iou, t_ids, p_ids = iou_matrix(TRUE, shifted)
    assert iou.shape == (3, 1) and list(t_ids) == [1, 2, 3] and list(p_ids) == [1]
    assert iou[0, 0] == pytest.approx(80 / 120) and iou[1:, 0].tolist() == [0, 0]


def test_shifted_split_and_merged_cells():
    far_shift = squares((0, 6, 10, 10))  # IoU 40 / 160 < 0.5: a miss and a false cell
    assert cell_counts(TRUE[:, :20] * (TRUE[:, :20] == 1), far_shift[:, :20]) == (0, 1, 1)
    split = squares((0, 0, 10, 10), (0, 20, 10, 10), (20, 0, 10, 12), (20, 12, 10, 8))  # 120/200 and 80/200
    assert cell_counts(TRUE, split) == (3, 1, 0)
    split_evenly = squares((0, 0, 10, 10), (0, 20, 10, 10), (20, 0, 10, 10), (20, 10, 10, 10))  # 0.5 each
    tp, fp, fn = cell_counts(TRUE, split_evenly)
    assert (tp, fp, fn) == (3, 1, 0), "at IoU exactly 0.5 one half matches, never both"
    merged = squares((0, 0, 10, 30), (20, 0, 10, 20))  # cells 1 and 2 as one: IoU 100/300 each
    assert cell_counts(TRUE, merged) == (1, 1, 2)


def test_empty_images_and_pooled_scores():
    empty = np.zeros_like(TRUE)
    assert cell_counts(empty, empty) == (0, 0, 0)
    assert cell_counts(TRUE, empty) == (0, 0, 3) and cell_counts(empty, TRUE) == (0, 3, 0)
    score = matched_f1([(3, 1, 0), (1, 0, 2)])
    assert score["f1"] == pytest.approx(8 / 11) and score["precision"] == 0.8 and score["recall"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(TRUE, TRUE[:10])


def test_interval_and_paired_difference():
    rng = np.random.default_rng(0)
    good = np.column_stack([rng.integers(5, 9, 60), rng.integers(0, 2, 60), rng.integers(0, 2, 60)])
    bad = np.column_stack([good[:, 0] - 3, good[:, 1] + 3, good[:, 2] + 3])
    score = matched_f1_with_interval(good, n_boot=300)
    assert score["low"] <= score["f1"] <= score["high"] and score["n_images"] == 60
    diff = paired_f1_difference(good, bad, n_boot=300)
    assert diff["low"] > 0 and diff["p_not_better"] == 0.0


@pytest.fixture(scope="module")
def demo_fields():
    sets = [{0}, {25}, {21, 23}, {2, 7}, {14, 16}, {6, 17}, {0, 25}, {12}]
    return [render_field(s, 128, np.random.default_rng(300 + k), truth=True) for k, s in enumerate(sets)]


def test_segmentation_finds_about_the_right_cells_on_demo_fields(demo_fields):
    counts, baseline = [], []
    for image, truth in demo_fields:
        seg = segment(image[BLUE], image[BODY])
        assert seg.cells.shape == image.shape[1:] and seg.cells.dtype == np.int32
        assert set(np.unique(seg.cells[seg.nuclei > 0])) == set(range(1, seg.nuclei.max() + 1)), "nucleus k in cell k"
        # Border slivers smaller than a nucleus are not expected to be found.
        big = int((np.bincount(truth.cells.ravel())[1:] > np.pi * seg.nucleus_radius**2).sum())
        assert abs(int(seg.cells.max()) - big) <= max(2, 0.2 * big), "about one cell per visible cell"
        counts.append(cell_counts(truth.cells, seg.cells))
        baseline.append(cell_counts(truth.cells, one_cell(image[BODY], seg.nuclei, seg.nucleus_radius)))
        assert disk_cells(seg.nuclei, seg.nucleus_radius).max() == seg.nuclei.max()
    assert matched_f1(counts)["f1"] > 0.7 > 0.1 > matched_f1(baseline)["f1"]


@pytest.mark.parametrize("size", [64, 256])
def test_segmentation_scales_with_the_image(size):
    image, truth = render_field({0, 25}, size, np.random.default_rng(9), truth=True)
    seg = segment(image[BLUE], image[BODY])
    assert size / 40 < seg.nucleus_radius < size / 8
    assert matched_f1([cell_counts(truth.cells, seg.cells)])["f1"] >= 0.6


@pytest.fixture(scope="module")
def screen_fields(tmp_path_factory):
    """The lab example's fields (three stains, 12 bits, rectangular), with their cells' truth."""
    root = tmp_path_factory.mktemp("screen")
    sheet = pd.read_csv(make_screen(root, n_train=0, n_test=24, seed=5, min_per_class=0), sep="\t")
    read = lambda path: np.asarray(Image.open(root / path)).astype(np.float32)  # noqa: E731
    return root, [(r.Id, read(r.dapi), read(r.tubulin)) for r in sheet.itertuples()]


def test_screen_cells_are_whole_hole_free_and_bigger_than_their_nuclei(screen_fields):
    _, fields = screen_fields
    for _, dapi, tubulin in fields:
        seg = segment(dapi, [tubulin])
        flags = image_flags(seg.cells, seg.nuclei)
        assert flags["holey_cells"] == 0, "every cell's holes filled"
        assert flags["small_cells"] == 0, "no cell is its bare nucleus"
        for k in range(1, seg.nuclei.max() + 1):
            assert (seg.cells[seg.nuclei == k] == k).all(), "cell k holds all of nucleus k"


def test_the_screen_keeps_its_cells_truth_and_its_segmentation_is_scored(screen_fields):
    root, fields = screen_fields
    truth = read_cell_labels(root / "test_cells.csv", len(LAB_CLASSES))
    assert set(truth) == {i for i, _, _ in fields}
    counts = []
    for image_id, dapi, tubulin in fields:
        true = load_masks(root / "test_cells", image_id)
        assert true.shape == dapi.shape and set(np.unique(true[true > 0])) == set(truth[image_id])
        assert regions_of(root, image_id) or not any(truth[image_id].values())
        counts.append(cell_counts(true, segment(dapi, [tubulin]).cells))
    assert matched_f1(counts)["f1"] > 0.7


def test_a_merged_body_is_split_at_its_nuclei():
    yy, xx = np.mgrid[:64, :96]
    nuclei = ((yy - 32) ** 2 + (xx - 30) ** 2 < 36) | ((yy - 32) ** 2 + (xx - 62) ** 2 < 36)
    body = (((yy - 32) / 14) ** 2 + ((xx - 46) / 28) ** 2 < 1) * 100.0  # one even blob over both
    seg = segment(nuclei * 200.0, [body])
    assert seg.nuclei.max() == 2 and seg.cells.max() == 2
    assert seg.cells[32, 30] != seg.cells[32, 62] and (seg.cells[32, 20:72] > 0).all()


def test_flags_count_small_holey_and_border_cells():
    cells = np.zeros((20, 20), np.int32)
    cells[2:9, 2:9] = 1
    cells[5, 5] = 0  # a hole
    cells[10:20, 10:20] = 2  # at the border
    nuclei = np.zeros_like(cells)
    nuclei[3:5, 3:5], nuclei[10:20, 10:20] = 1, 2  # cell 2 is its bare nucleus
    assert image_flags(cells, nuclei) == {"small_cells": 1, "holey_cells": 1, "border_cells": 1}
    assert image_flags(fill_holes(cells))["holey_cells"] == 0 and image_flags(cells)["small_cells"] == -1


def test_segmentation_of_a_blank_field_finds_nothing():
    blank = np.full((64, 64), 7, np.uint8)
    seg = segment(blank, [blank, blank])
    assert seg.cells.max() == 0 and seg.nuclei.max() == 0


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_user_masks_load_as_int32_labels(tmp_path):
    save(tmp_path / "a.png", TRUE.astype(np.uint16))
    save(tmp_path / "b.tif", (TRUE * 1000).astype(np.int32))
    assert np.array_equal(load_masks(tmp_path, "a", shape=(40, 40)), TRUE)
    loaded = load_masks(tmp_path, "b")
    assert loaded.dtype == np.int32 and loaded.max() == 3000


def test_user_masks_refused_with_the_reason(tmp_path):
    save(tmp_path / "a.png", TRUE.astype(np.uint16))
    with pytest.raises(InputError, match=r"a.png: mask is 40x40 px .* image a is 64x48 px"):
        load_masks(tmp_path, "a", shape=(48, 64))
    with pytest.raises(InputError, match="no mask for image zz"):
        load_masks(tmp_path, "zz")
    save(tmp_path / "rgb.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="one plane of integer cell labels"):
        load_masks(tmp_path, "rgb")
    save(tmp_path / "two.png", TRUE.astype(np.uint8))
    save(tmp_path / "two.tif", TRUE.astype(np.uint8))
    with pytest.raises(InputError, match="several masks"):
        load_masks(tmp_path, "two")

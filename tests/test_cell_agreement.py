"""Cells that agree with their image (issue 28): the gated default keeps the image's score where the cells
all show its labels, the located maps point inside the right cell, and the demo draws such fields too."""

import numpy as np
import pytest

from hpa.cells.evaluate_job import cells_agree, flattened
from hpa.cells.label_metrics import cell_map, judge_cells
from hpa.cells.located import located_maps
from hpa.cells.scores import cell_scores, cells_of, confidences, whole_shares
from hpa.classes import CHANNELS
from hpa.demo.dataset import AGREE_SHARE, agrees
from hpa.demo.render import ELIGIBLE, render_field


def two_cells():
    mask = np.zeros((8, 8), np.int32)
    mask[:, :4], mask[:, 4:] = 1, 2
    return mask


def test_gated_keeps_the_images_probability_where_every_cell_is_positive_alone_and_masked_does_not():
    alone = np.array([[0.9, 0.6], [0.5, 0.8]])  # both cells above both thresholds, unequally
    probs, thresholds = np.array([0.7, 0.4]), np.array([0.3, 0.5])
    gated = cell_scores(probs, two_cells(), method="gated", alone=alone, thresholds=thresholds).scores
    masked = cell_scores(probs, two_cells(), method="masked", alone=alone).scores
    assert np.allclose(gated, [probs, probs])
    assert masked[1, 0] < probs[0] and masked[0, 1] < probs[1]  # what cost the agreeing cells ranks
    assert np.allclose(flattened(gated), gated)


def test_gated_scales_a_cell_below_the_threshold_and_the_best_cell_keeps_the_probability_where_none_passes():
    alone = np.array([[0.8, 0.2], [0.1, 0.1]])
    scores = cell_scores(np.array([0.6, 0.5]), two_cells(), method="gated", alone=alone,
                         thresholds=np.array([0.4, 0.4])).scores
    assert np.allclose(scores[:, 0], [0.6, 0.6 * 0.1 / 0.4])  # cell 2 a quarter of the threshold
    assert np.allclose(scores[:, 1], [0.5, 0.5 * 0.1 / 0.2])  # none passes: over the best cell's, as masked
    with pytest.raises(ValueError, match="thresholds"):
        cell_scores(np.array([0.6, 0.5]), two_cells(), method="gated", alone=alone)


def field_with_a_sliver():
    """Three whole cells of 20, 25 and 30 px and a 5 px sliver on the top border (cell 4)."""
    mask = np.zeros((12, 12), np.int32)
    mask[3:7, 1:6], mask[3:8, 6:11], mask[8:11, 1:11] = 1, 2, 3  # 20, 25, 30 px; none on the border
    mask[0, 3:8] = 4
    return mask


def test_a_cell_is_discounted_by_its_share_of_the_fields_median_uncut_cell():
    mask = field_with_a_sliver()
    ids, _, areas = cells_of(mask)
    assert np.allclose(whole_shares(mask, ids, areas), [20 / 25, 1, 1, 5 / 25])
    cut = np.zeros((6, 6), np.int32)
    cut[:, :3], cut[:, 3:5] = 1, 2  # both on the border: the median of all cells
    assert np.allclose(whole_shares(cut, *cells_of(cut)[::2]), [1, 12 / 15])
    scores = np.full((4, 2), 0.8)
    assert confidences(scores, whole_shares(mask, ids, areas), "keep") is scores
    assert np.allclose(confidences(scores, whole_shares(mask, ids, areas), "discount")[:, 0], [0.64, 0.8, 0.8, 0.16])
    with pytest.raises(ValueError, match="partial_cells 'drop'"):
        confidences(scores, areas, "drop")


def test_discounting_a_sliver_that_matches_no_true_cell_ranks_it_below_the_whole_cells_of_a_weaker_image():
    """What the discount is for: a sliver the truth cut otherwise is a false positive for its image's classes,
    and at its full score it ranks above another image's true cells."""
    found = field_with_a_sliver()
    true = found.copy()
    true[0:2, 3:8] = 4  # the truth's sliver is twice as deep: IoU 0.5, no match at 0.6
    labels = {k: (0,) for k in (1, 2, 3, 4)}
    ids, _, areas = cells_of(found)
    weaker = np.full((4, 1), 0.5)  # a second image of the same field, less sure of class 0
    aps = {}
    for partial in ("keep", "discount"):
        strong = confidences(np.full((4, 1), 0.9), whole_shares(found, ids, areas), partial)
        images = [judge_cells(true, labels, found, ids, strong), judge_cells(true, labels, found, ids, weaker)]
        aps[partial] = cell_map(images)["map"]
    assert aps["discount"] > aps["keep"]


def test_located_maps_peak_where_the_protein_is_brightest_in_the_cell_the_model_rates_highest_alone():
    protein = np.zeros((8, 8), np.float32)
    protein[2, 1], protein[5, 6] = 200, 100  # the brightest stain lies in cell 1
    grid = np.ones((2, 2, 2), np.float32)  # a flat 2x2 class map says nothing of where
    alone = np.array([[0.1, 0.9], [0.9, 0.1]])  # class 0 in cell 2, class 1 in cell 1
    maps = located_maps(grid, two_cells(), np.array([1, 2]), alone, protein, "square")
    assert np.unravel_index(maps[0].argmax(), (8, 8)) == (5, 6)
    assert np.unravel_index(maps[1].argmax(), (8, 8)) == (2, 1)
    assert maps[:, two_cells() == 0].size == 0 or not maps[:, two_cells() == 0].any()


def test_an_image_agrees_when_every_cell_shows_all_of_its_labels():
    assert cells_agree({1: (0, 5), 2: (0, 5)})
    assert not cells_agree({1: (0, 5), 2: (0,)})
    assert not cells_agree({1: (0,), 2: ()})


def test_agreeing_demo_fields_show_every_label_in_every_eligible_cell_and_differ_only_in_green():
    labels = {0, 2, 21}
    for seed in range(6):
        plain, t_plain = render_field(labels, 96, np.random.default_rng(seed), truth=True)
        agreed, t_agreed = render_field(labels, 96, np.random.default_rng(seed), truth=True, agree=True)
        green = CHANNELS.index("green")
        others = [c for c in range(len(CHANNELS)) if c != green]
        assert np.array_equal(plain[others], agreed[others]) and np.array_equal(t_plain.cells, t_agreed.cells)
        assert all(set(cell) == labels for cell in t_agreed.labels)
        assert all(set(a) >= set(p) for a, p in zip(t_agreed.labels, t_plain.labels))
    assert not set(ELIGIBLE) & labels


def test_about_the_agreeing_share_of_demo_fields_agree():
    share = np.mean([agrees(seed) for seed in range(2000)])
    assert abs(share - AGREE_SHARE) < 0.04

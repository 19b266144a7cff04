"""Per-cell labels: scores on hand-made masks, the 2021 encoding, per-cell mAP and the pointing game."""

import numpy as np
import pytest

from hpa.cells.encoding import (
    decode_mask,
    encode_mask,
    parse_prediction_string,
    prediction_string,
    rle_counts,
    submission_row,
)
from hpa.cells.frames import upsample
from hpa.cells.label_metrics import (
    cell_map,
    cell_map_with_interval,
    judge_cells,
    paired_cell_map_difference,
    peak_point,
    point_hits,
    pointing_game,
)
from hpa.cells.scores import cell_means, cell_scores, cells_of, score_table


def squares(*boxes, shape=(40, 40), ids=None):
    """A label image with cell ids[k] (default k + 1) filling boxes[k] = (top, left, height, width)."""
    mask = np.zeros(shape, np.int32)
    for k, (top, left, h, w) in enumerate(boxes):
        mask[top:top + h, left:left + w] = k + 1 if ids is None else ids[k]
    return mask


MASK = squares((0, 0, 10, 10), (0, 20, 10, 20), (20, 0, 10, 20), ids=[3, 7, 9])


def test_cells_boxes_and_areas():
    ids, boxes, areas = cells_of(MASK)
    assert ids.tolist() == [3, 7, 9] and areas.tolist() == [100, 200, 200]
    assert boxes.tolist() == [[0, 0, 10, 10], [20, 0, 40, 10], [0, 20, 20, 30]]  # x0, y0, x1, y1 (exclusive)
    with pytest.raises(ValueError, match="non-negative integer"):
        cells_of(MASK.astype(float))


def test_image_map_and_blend_scores():
    probs = np.array([0.9, 0.5, 0.2])
    image = cell_scores(probs, MASK)
    assert image.scores.shape == (3, 3) and np.allclose(image.scores, probs)
    # Class 0 drawn only in cell 7 (mean 2 there), class 1 in cell 3 (mean 1) and half of cell 9 (mean 0.5).
    maps = np.zeros((3, 40, 40))
    maps[0][0:10, 20:40] = 2.0
    maps[1][0:10, 0:10] = 1.0
    maps[1][20:30, 0:10] = 1.0
    maps[1][30:, 30:] = -5.0  # background and negative: no say
    cells = cell_scores(probs, MASK, maps, method="map")
    expected_ratio = np.array([[0, 1, 1], [1, 0, 1], [0, 0.5, 1]])  # class 2's map is zero: ratio 1
    assert np.allclose(cells.scores, probs * expected_ratio)
    blend = cell_scores(probs, MASK, maps, method="blend", weight=0.25)
    assert np.allclose(blend.scores, probs * (0.25 + 0.75 * expected_ratio))
    partial = cell_scores(probs, MASK, {1: maps[1]}, method="map")  # classes 0 and 2 without a map
    assert np.allclose(partial.scores[:, [0, 2]], probs[[0, 2]]) and np.allclose(partial.scores[:, 1], [0.5, 0, 0.25])
    with pytest.raises(ValueError, match="needs class maps"):
        cell_scores(probs, MASK, method="map")
    with pytest.raises(ValueError, match="unknown per-cell method"):
        cell_scores(probs, MASK, maps, method="crop")


def test_coarse_maps_pool_as_the_upsampled_map_would():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 6, (37, 53)).astype(np.int32)
    mask[mask == 3] = 0
    ids = cells_of(mask)[0]
    for grid in (rng.normal(size=(5, 7)), rng.normal(size=(1, 1)), rng.normal(size=(37, 9))):
        up = upsample(grid, mask.shape)
        naive = np.array([up[mask == k].mean() for k in ids])
        assert np.allclose(cell_means(mask, ids, {0: grid})[0], naive)


def test_upsampling_is_torchs_bilinear():
    torch = pytest.importorskip("torch")
    grid = np.random.default_rng(1).normal(size=(4, 6))
    ref = torch.nn.functional.interpolate(torch.tensor(grid)[None, None], size=(13, 32), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    assert np.allclose(upsample(grid, (13, 32)), ref)


def test_score_table_columns():
    table = score_table("im1", cell_scores([0.25, 0.5], MASK))
    assert list(table.columns) == ["Id", "cell", "x0", "y0", "x1", "y1", "area", "p0", "p1"]
    assert table["cell"].tolist() == [3, 7, 9] and table["p1"].tolist() == [0.5] * 3 and (table["Id"] == "im1").all()


# The 2021 encoding.
def rle_to_string(counts):
    """cocoapi's rleToString (maskApi.c), written out: LEB128-like, 5 bits a char from '0',
    each count after the second minus the count two before it."""
    out = []
    for i, x in enumerate(counts):
        x = x - counts[i - 2] if i > 2 else x
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out).encode()


def from_runs(runs, shape):
    """A mask from COCO's runs: alternately zeros and ones, down the columns."""
    flat = np.concatenate([np.full(n, k % 2, np.uint8) for k, n in enumerate(runs)])
    return flat.reshape(shape, order="F")


def test_rle_counts_known_answers():
    assert rle_counts(np.array([[0, 1], [1, 1]])) == b"13"  # down the columns: 0 | 1 1 1
    runs = [5, 40, 3, 16]  # 40 takes two chars (X1); 16 - 40 = -24 is a negative delta (XO)
    assert rle_counts(from_runs(runs, (8, 8))) == b"5X13XO" == rle_to_string(runs)
    rng = np.random.default_rng(2)
    for _ in range(5):
        runs = [int(rng.integers(0, 3))] + rng.integers(1, 3000, 9).tolist()
        shape = (sum(runs) // 7 + 1, 7)
        runs[-1] += shape[0] * 7 - sum(runs)
        assert rle_counts(from_runs(runs, shape)) == rle_to_string([r for r in runs])


def test_mask_encoding_round_trip():
    for mask in (MASK == 7, MASK == 3, np.zeros((5, 3), bool), np.ones((3, 5), bool), MASK[:, :33] == 9):
        text = encode_mask(mask)
        assert text.isascii() and " " not in text
        assert np.array_equal(decode_mask(text, *mask.shape), mask)


def test_prediction_string_round_trip():
    ids, _, _ = cells_of(MASK)
    scores = np.array([[0.9, 0.01], [0.0, 0.5], [0.25, 0.75]])
    row = submission_row("im", MASK[:, :33], ids, scores, min_score=0.05)
    assert (row["ImageWidth"], row["ImageHeight"]) == (33, 40)
    triples = parse_prediction_string(row["PredictionString"], 40, 33)
    assert [(c, s) for c, s, _ in triples] == [(0, 0.9), (1, 0.5), (0, 0.25), (1, 0.75)]
    assert all(np.array_equal(m, MASK[:, :33] == cell) for (_, _, m), cell in zip(triples, [3, 7, 9, 9]))
    assert prediction_string(MASK, ids, np.zeros((3, 2)), min_score=0.1) == ""
    with pytest.raises(ValueError, match="triples"):
        parse_prediction_string("0 0.5", 40, 40)


# Per-cell mAP the 2021 way.
FIVE = squares((0, 0, 10, 10), (0, 15, 10, 10), (0, 30, 10, 10), (20, 0, 10, 10), (20, 15, 10, 10))
FIVE_LABELS = [(0,), (1,), (0,), (0,), (1,)]


def test_perfect_and_all_wrong():
    truth = np.zeros((5, 3))
    for k, labels in enumerate(FIVE_LABELS):
        truth[k, list(labels)] = 1
    perfect = judge_cells(FIVE, FIVE_LABELS, FIVE, np.arange(1, 6), truth)
    assert cell_map([perfect, perfect])["map"] == 1.0
    assert cell_map([perfect])["n_classes"] == 2 and cell_map([perfect])["n_true"].tolist() == [3, 2, 0]
    shifted = np.roll(FIVE, 5, axis=1)  # IoU 50 / 150 with its own cell: no match at 0.6
    wrong = judge_cells(FIVE, FIVE_LABELS, shifted, np.arange(1, 6), truth)
    assert cell_map([wrong])["map"] == 0.0
    inverted = judge_cells(FIVE, FIVE_LABELS, FIVE, np.arange(1, 6), 1 - truth)
    assert 0 < cell_map([inverted])["map"] < 1  # right cells ranked last still count at low precision


def test_ap_against_a_hand_computation():
    pred = np.where(FIVE == 4, 0, FIVE)  # cell 4 (class 0) missed by the segmentation
    scores = np.array([[0.9, 0.1], [0.8, 0.5], [0.7, 0.2], [0.6, 0.4]])  # cells 1, 2, 3, 5
    judged = judge_cells(FIVE, FIVE_LABELS, pred, [1, 2, 3, 5], scores)
    # class 0 ranked TP FP TP FP of 3 true: 1/3 * 1 + 1/3 * 2/3; class 1: TP TP FP FP of 2: 1.
    result = cell_map([judged])
    assert result["ap"][0] == pytest.approx(5 / 9) and result["ap"][1] == pytest.approx(1.0)
    assert result["map"] == pytest.approx(7 / 9)
    # Ties form one step: all four at 0.5 for class 0 -> precision 2/4 at recall 2/3.
    tied = judge_cells(FIVE, FIVE_LABELS, pred, [1, 2, 3, 5], np.full((4, 2), 0.5))
    assert cell_map([tied])["ap"][0] == pytest.approx(2 / 3 * 2 / 4)


def open_images_ap(scores, hits, n_true):
    """Open Images' compute_average_precision, written out: one detection at a time, precision
    padded with 0, made non-increasing from the right, summed where recall changes."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = np.concatenate([[0], tp / n_true, [1]])
    precision = np.concatenate([[0], tp / (tp + fp), [0]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def test_ap_matches_open_images_on_untied_scores():
    rng = np.random.default_rng(4)
    images = []
    for _ in range(30):
        labels = [tuple(np.flatnonzero(rng.random(3) < 0.4)) for _ in range(5)]
        pred = np.where(FIVE == rng.integers(1, 6), 0, FIVE)  # one cell missed
        ids = np.unique(pred)[1:]
        images.append(judge_cells(FIVE, labels, pred, ids, rng.random((len(ids), 3))))
    result = cell_map(images)
    for c in range(3):
        pick = [(d.scores[d.classes == c], d.hits[d.classes == c]) for d in images]
        scores, hits = (np.concatenate(v) for v in zip(*pick))
        n_true = sum(d.n_true[c] for d in images)
        assert result["ap"][c] == pytest.approx(open_images_ap(scores, hits, n_true))


def test_unverified_classes_are_ignored_unless_strict():
    only_zero = [(0,), (), (0,), (0,), ()]
    scores = np.array([[0.5, 0.9], [0.1, 0.9], [0.5, 0.9], [0.5, 0.9], [0.1, 0.9]])
    verified = judge_cells(FIVE, only_zero, FIVE, np.arange(1, 6), scores)
    assert set(verified.classes.tolist()) == {0} and cell_map([verified])["map"] == 1.0
    strict = judge_cells(FIVE, only_zero, FIVE, np.arange(1, 6), scores, verified_only=False)
    assert len(strict.classes) == 10 and not strict.hits[strict.classes == 1].any()
    # Class 1 has no true cell anywhere: it is not averaged, so its false positives cost nothing in
    # this image alone; pooled with an image that has class 1 they come first and cost precision.
    other = judge_cells(FIVE, FIVE_LABELS, FIVE, np.arange(1, 6), np.eye(5, 2)[[0, 1, 0, 0, 1]] * 0.5)
    assert cell_map([strict, other])["ap"][1] < cell_map([verified, other])["ap"][1] == 1.0


def test_interval_and_paired_difference():
    rng = np.random.default_rng(3)
    truth = np.eye(2)[[0, 1, 0, 0, 1]]
    good, bad = [], []
    for _ in range(40):
        noise = rng.uniform(0, 0.3, (5, 2))
        good.append(judge_cells(FIVE, FIVE_LABELS, FIVE, np.arange(1, 6), truth * 0.5 + noise))
        bad.append(judge_cells(FIVE, FIVE_LABELS, FIVE, np.arange(1, 6), rng.uniform(0, 1, (5, 2))))
    score = cell_map_with_interval(good, n_boot=200)
    assert score["low"] <= score["map"] <= score["high"] and score["n_images"] == 40
    diff = paired_cell_map_difference(good, bad, n_boot=200)
    assert diff["low"] > 0 and diff["p_not_better"] == 0.0


def test_judge_cells_refuses_unknown_cells():
    with pytest.raises(ValueError, match=r"predicted cells \[8\]"):
        judge_cells(FIVE, FIVE_LABELS, FIVE, [1, 8], np.zeros((2, 2)))


# The pointing game.
def test_pointing_game_on_a_hand_made_case():
    foreground = FIVE > 0  # 500 px
    regions = {0: FIVE == 1, 1: FIVE == 2, 2: FIVE == 3}  # 100 px each: chance 0.2
    hit_map = np.zeros((4, 4))
    hit_map[0, 0] = 1  # coarse: its peak upsamples to the top-left, in cell 1
    miss_map = np.zeros((40, 40))
    miss_map[25, 25] = 1  # in cell 5, not cell 2
    records = point_hits({0: hit_map, 1: miss_map}, regions, foreground, classes=[0, 1, 2])
    assert records == [(0, True, 0.2), (1, False, 0.2)]  # class 2 has no map: not tested
    result = pointing_game([records, [(0, True, 0.1)]], n_classes=3, n_boot=200)
    assert result["classes"][0]["hit"] == 1.0 and result["classes"][0]["chance"] == pytest.approx(0.15)
    assert result["classes"][1]["n"] == 1 and 2 not in result["classes"]
    pooled = result["all"]
    assert pooled["n"] == 3 and pooled["hit"] == pytest.approx(2 / 3)
    assert pooled["difference"] == pytest.approx(2 / 3 - 0.5 / 3)
    assert pooled["hit_low"] <= pooled["hit"] <= pooled["hit_high"]


def test_the_peak_of_a_coarse_map_is_its_best_cells_centre():
    grid = np.zeros((2, 2))
    grid[1, 1] = 1  # bilinear upsampling is flat over the whole bottom-right quarter beyond the centre
    assert peak_point(grid, (128, 128)) == (96, 96)
    assert peak_point(np.eye(3)[::-1], (30, 60)) == (5, 50)  # ties: the first highest cell


def test_one_pass_of_resamples_gives_every_interval_and_paired_difference():
    from hpa.cells.label_metrics import compare_cell_maps

    rng = np.random.default_rng(4)
    mask = squares((0, 0, 10, 10), (0, 20, 10, 10), (20, 0, 10, 10))
    labels = {1: (0,), 2: (1,), 3: (0, 1)}
    scorings = {name: [judge_cells(mask, labels, mask, np.array([1, 2, 3]), rng.random((3, 2))) for _ in range(12)]
                for name in ("a", "b", "c")}
    scores, differences = compare_cell_maps(scorings, [("a", "b"), ("c", "b")], n_boot=200)
    for name, images in scorings.items():
        alone = cell_map_with_interval(images, n_boot=200)
        assert np.array_equal(scores[name].pop("ap"), alone.pop("ap"), equal_nan=True)
        assert np.array_equal(scores[name].pop("n_true"), alone.pop("n_true")) and scores[name] == alone
    assert differences["a", "b"] == paired_cell_map_difference(scorings["a"], scorings["b"], n_boot=200)
    assert differences["c", "b"] == paired_cell_map_difference(scorings["c"], scorings["b"], n_boot=200)

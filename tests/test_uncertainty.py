"""No-skill line, bootstrap intervals and paired differences of macro F1."""

import numpy as np
import pytest

from hpa import thresholds
from hpa.metrics import (
    bootstrap_macro_f1,
    macro_f1,
    no_skill_macro_f1,
    paired_difference,
    score_with_interval,
    scores_with_intervals,
)


def noisy(rng, y, flip):
    return y ^ (rng.random(y.shape) < flip)


def test_no_skill_is_predicting_every_class_and_equals_2p_over_1_plus_p(rng):
    y = rng.random((500, 28)) < rng.uniform(0.01, 0.4, size=28)
    p = y.mean(0)
    assert no_skill_macro_f1(y) == pytest.approx(np.mean(2 * p / (1 + p)))
    # No constant prediction does better, per class: "never" scores 0.
    assert no_skill_macro_f1(y) > macro_f1(y, np.zeros_like(y))


def test_bootstrap_resamples_images_and_is_seeded(rng):
    y = rng.random((200, 28)) < 0.1
    pred = noisy(rng, y, 0.05)
    a = bootstrap_macro_f1(y, pred, n_boot=300, seed=3)
    assert a.shape == (1, 300)
    assert np.array_equal(a, bootstrap_macro_f1(y, pred, n_boot=300, seed=3))
    assert not np.array_equal(a, bootstrap_macro_f1(y, pred, n_boot=300, seed=4))
    # Resampling images (not cells): the mean of the resamples sits near the full-sample score.
    assert a.mean() == pytest.approx(macro_f1(y, pred), abs=0.03)
    # Blocks of resamples give the same draws as one block would.
    import hpa.metrics as metrics
    small = metrics._CHUNK_CELLS
    try:
        metrics._CHUNK_CELLS = 1000
        chunked = bootstrap_macro_f1(y, pred, n_boot=300, seed=3)
    finally:
        metrics._CHUNK_CELLS = small
    assert chunked.shape == a.shape and abs(chunked.mean() - a.mean()) < 0.01


def test_interval_covers_the_truth_about_as_often_as_it_says():
    """Draw many small test sets from one large population: the 95% interval of each should
    contain the population's macro F1 most of the time, and narrow as the test set grows."""
    rng = np.random.default_rng(0)
    population = rng.random((40_000, 6)) < np.array([0.4, 0.2, 0.1, 0.05, 0.3, 0.15])
    pred_all = noisy(rng, population, 0.08)
    truth = macro_f1(population, pred_all)
    covered, widths = 0, []
    for trial in range(40):
        idx = rng.choice(len(population), 300, replace=False)
        s = score_with_interval(population[idx], pred_all[idx], n_boot=400, seed=trial)
        covered += s["low"] <= truth <= s["high"]
        widths.append(s["high"] - s["low"])
    assert covered >= 33  # 95% nominal; 40 trials
    big = score_with_interval(population[:3000], pred_all[:3000], n_boot=400)
    assert big["high"] - big["low"] < 0.6 * np.mean(widths)


def test_score_with_interval_reports_no_skill_of_the_same_images(rng):
    y = rng.random((300, 28)) < 0.08
    s = score_with_interval(y, noisy(rng, y, 0.02))
    assert s["low"] < s["macro_f1"] < s["high"] and s["n_images"] == 300
    assert s["no_skill"] == pytest.approx(no_skill_macro_f1(y))
    assert s["low"] > s["no_skill"]
    assert np.isnan(score_with_interval(y[:0], y[:0])["macro_f1"])


def test_paired_difference_is_tighter_than_unpaired_and_finds_a_small_real_gain():
    rng = np.random.default_rng(1)
    y = rng.random((400, 28)) < 0.1
    base = noisy(rng, y, 0.10)
    better = base.copy()
    fix = rng.random(y.shape) < 0.15  # correct 15% of the base's cells: a small, real gain
    better[fix] = y[fix]
    d = paired_difference(y, better, base)
    assert d["difference"] == pytest.approx(macro_f1(y, better) - macro_f1(y, base))
    assert d["low"] > 0 and d["p_not_better"] < 0.025
    a = score_with_interval(y, better)
    b = score_with_interval(y, base)
    assert a["low"] < b["high"]  # unpaired intervals overlap ...
    assert d["high"] - d["low"] < (a["high"] - a["low"])  # ... the paired one is narrower
    same = paired_difference(y, base, base)
    assert same["difference"] == 0 and same["low"] == same["high"] == 0


def test_shape_mismatch_is_refused(rng):
    y = rng.random((10, 28)) < 0.5
    with pytest.raises(ValueError, match="shape"):
        bootstrap_macro_f1(y, y[:, :5])


def test_honest_predictions_never_use_their_own_fold():
    """Changing one fold's labels must not change that fold's honest predictions."""
    rng = np.random.default_rng(2)
    y = rng.random((240, 28)) < 0.1
    probs = np.clip(0.3 * y + 0.7 * rng.random(y.shape), 0, 1)
    folds = np.arange(240) % 3
    pred = thresholds.honest_predictions("per_class", probs, y, folds)
    y2 = y.copy()
    y2[folds == 0] = rng.random((80, 28)) < 0.5
    pred2 = thresholds.honest_predictions("per_class", probs, y2, folds)
    assert np.array_equal(pred[folds == 0], pred2[folds == 0])
    assert not np.array_equal(pred[folds == 1], pred2[folds == 1])
    assert thresholds.honest_estimate("per_class", probs, y, folds) == pytest.approx(macro_f1(y, pred))


def test_scores_with_intervals_equal_one_call_per_prediction(rng):
    y = rng.random((300, 28)) < 0.1
    preds = [noisy(rng, y, flip) for flip in (0.02, 0.1, 0.3)]
    together = scores_with_intervals(y, *preds, n_boot=200, seed=5)
    assert together == [score_with_interval(y, p, n_boot=200, seed=5) for p in preds]

import numpy as np
import pytest
from sklearn.metrics import f1_score

from hpa import thresholds
from hpa.metrics import f1_per_class, macro_f1


def random_problem(rng, n=300, k=28):
    y = rng.random((n, k)) < rng.uniform(0.01, 0.4, size=k)
    y[:, 5] = False  # a class with no positives, as in a small fold
    probs = np.clip(0.35 * y + rng.random((n, k)) * 0.7, 0, 1).round(2)  # ties on purpose
    return probs, y


def test_macro_f1_matches_sklearn(rng):
    probs, y = random_problem(rng)
    pred = probs >= 0.5
    expected = f1_score(y, pred, average="macro", zero_division=0)
    assert macro_f1(y, pred) == pytest.approx(expected, abs=1e-12)
    assert np.allclose(f1_per_class(y, pred), f1_score(y, pred, average=None, zero_division=0))


def brute_force_best_f1(scores, positives):
    return max(
        f1_score(positives, scores >= t, zero_division=0) for t in np.unique(np.r_[scores, 2.0])
    )


def test_best_cut_is_the_exact_optimum(rng):
    probs, y = random_problem(rng, n=120)
    for k in (0, 3, 7, 27):
        threshold, f1 = thresholds.best_cut(probs[:, k], y[:, k])
        assert f1 == pytest.approx(brute_force_best_f1(probs[:, k], y[:, k]))
        # The returned threshold realises the optimum it reports.
        assert f1_score(y[:, k], probs[:, k] >= threshold, zero_division=0) == pytest.approx(f1)


def test_per_class_beats_every_global_threshold(rng):
    probs, y = random_problem(rng)
    fitted = thresholds.fit("per_class", probs, y)
    best_global = thresholds.fit("global", probs, y)
    assert fitted[5] == 0.5  # no positives: the fallback, not a value fitted on nothing
    per_class_f1 = macro_f1(y, thresholds.predict(probs, fitted))
    assert per_class_f1 >= macro_f1(y, thresholds.predict(probs, best_global))
    assert per_class_f1 > macro_f1(y, probs >= 0.5)


def test_unknown_method_names_the_choices(rng):
    probs, y = random_problem(rng, n=10)
    with pytest.raises(ValueError, match="per_class"):
        thresholds.fit("magic", probs, y)


def test_soft_f1_fit_is_close_to_the_exact_optimum(rng):
    probs, y = random_problem(rng, n=400)
    exact = macro_f1(y, thresholds.predict(probs, thresholds.fit("per_class", probs, y)))
    soft = macro_f1(y, thresholds.predict(probs, thresholds.fit("soft_f1", probs, y)))
    assert soft > exact - 0.05
    assert soft > macro_f1(y, probs >= 0.5)


def test_frequency_thresholds_are_the_class_frequencies(rng):
    probs, y = random_problem(rng)
    freq = y.mean(0)
    t = thresholds.fit("frequency", probs, y, freq)
    assert np.allclose(t[freq > 0], freq[freq > 0])


def test_match_distribution_predicts_each_class_at_its_training_rate(rng):
    probs = rng.random((1000, 28))
    freq = np.linspace(0.0, 0.4, 28)
    t = thresholds.match_distribution(probs, freq)
    rate = thresholds.predict(probs, t).mean(0)
    assert np.allclose(rate, freq, atol=1e-3)


def test_shrink_toward_zero_scales_like_the_second_place(rng):
    probs, y = random_problem(rng)
    fitted = thresholds.fit("per_class", probs, y)
    shrunk = thresholds.fit("per_class", probs, y, shrink_factor=0.7, shrink_toward=0.0)
    assert np.allclose(shrunk, 0.7 * fitted)
    toward_global = thresholds.fit("per_class", probs, y, shrink_factor=0.0)
    assert np.allclose(toward_global, thresholds.fit("global", probs, y))


def test_top1_gives_every_image_a_class():
    probs = np.array([[0.1, 0.3, 0.2], [0.9, 0.1, 0.8]])
    pred = thresholds.predict(probs, [0.5, 0.5, 0.5], top1=True)
    assert pred.tolist() == [[False, True, False], [True, False, True]]


def test_honest_estimate_exposes_threshold_overfitting():
    rng = np.random.default_rng(5)
    y = rng.random((300, 28)) < 0.05
    probs = rng.random((300, 28))  # no signal at all
    folds = np.arange(300) % 3
    in_sample = macro_f1(y, thresholds.predict(probs, thresholds.fit("per_class", probs, y)))
    honest = thresholds.honest_estimate("per_class", probs, y, folds)
    assert in_sample > honest + 0.03
    assert honest < 0.15  # near the no-skill F1 for 5% classes


def test_every_method_is_reachable_by_name(rng):
    probs, y = random_problem(rng, n=60)
    freq = y.mean(0)
    got = {name: thresholds.fit(name, probs, y, freq) for name in thresholds.METHODS}
    assert set(got) == {"global", "per_class", "soft_f1", "frequency", "match_distribution"}
    for name, t in got.items():
        assert t.shape == (28,) and np.all((t >= 0) & (t <= 1.0 + 1e-6)), name
    # Each name reaches its own method: no two give the same thresholds, and each has its shape.
    assert len({t.round(6).tobytes() for t in got.values()}) == len(got)
    assert np.ptp(got["global"]) == 0 and np.ptp(got["per_class"]) > 0
    assert np.allclose(got["frequency"][freq > 0], freq[freq > 0])


def test_macro_f1_at_every_cut_equals_thresholding_at_each(rng):
    y = rng.random((400, 28)) < 0.15
    # Scores on the cuts themselves (ties) and in float32, where a cut off by one would show.
    probs = np.where(rng.random(y.shape) < 0.3, rng.choice([0.25, 0.5], size=y.shape), rng.random(y.shape))
    probs = probs.astype(np.float32)
    cuts = np.arange(0.005, 1.0, 0.005)
    expected = [macro_f1(y, probs >= t) for t in cuts]
    assert np.array_equal(thresholds.macro_f1_at(probs, y, cuts), expected)
    assert thresholds.fit_global(probs, y)[0] == cuts[int(np.argmax(expected))]

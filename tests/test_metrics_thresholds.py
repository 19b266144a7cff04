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

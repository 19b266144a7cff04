"""Multi-label classification metrics, defined as scikit-learn defines them."""

from __future__ import annotations

import numpy as np
import pandas as pd


def confusion_counts(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class true positives, false positives and false negatives."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(axis=0)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    return tp, fp, fn


def f1_per_class(y_true, y_pred) -> np.ndarray:
    """F1 per class; 0 where it is undefined (no positives, none predicted), as sklearn."""
    tp, fp, fn = confusion_counts(y_true, y_pred)
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)


def macro_f1(y_true, y_pred) -> float:
    """``sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)``."""
    return float(f1_per_class(y_true, y_pred).mean())


def per_class_report(y_true, y_pred, thresholds, names) -> pd.DataFrame:
    """Per class (``names``, one per column of ``y_true``): F1, precision, recall, support, predicted, threshold."""
    tp, fp, fn = confusion_counts(y_true, y_pred)
    if len(names) != len(tp):
        raise ValueError(f"{len(names)} class names for {len(tp)} classes; they must agree")
    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    return pd.DataFrame(
        {
            "class": np.arange(len(tp)),
            "name": list(names),
            "f1": f1_per_class(y_true, y_pred).round(4),
            "precision": precision.round(4),
            "recall": recall.round(4),
            "support": tp + fn,
            "predicted": tp + fp,
            "threshold": np.asarray(thresholds, dtype=float).round(4),
        }
    )


N_BOOT = 1000


LEVEL = 0.95


_CHUNK_CELLS = 4_000_000  # resamples x images per block: ~32 MB of float64 weights


def no_skill_macro_f1(y_true) -> float:
    """Macro F1 of predicting every class for every image.

    Per class, "always" is the best constant prediction (F1 = 2p / (1 + p) at prevalence
    p; "never" scores 0), so this is the line a classifier must clear to show any skill.
    """
    y = np.asarray(y_true, dtype=bool)
    return macro_f1(y, np.ones_like(y))


def _resample_counts(n: int, n_boot: int, seed: int):
    """Blocks of bootstrap resamples as (resamples, n) counts of how often each image is drawn."""
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)


def bootstrap(score, items, n: int, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``score(item, w)`` of each item on the same ``n_boot`` resamples of ``n`` images: shape
    (items, n_boot, ...), where ``w`` is a (resamples, n) block of how often each image is drawn.

    The one bootstrap every score's interval and paired difference comes from (image F1, per-cell
    matched F1, per-cell mAP): all items share the resamples, so rows can be subtracted (paired).
    """
    out, done = None, 0
    for w in _resample_counts(n, n_boot, seed):
        for i, item in enumerate(items):
            block = np.asarray(score(item, w), float)
            if out is None:
                out = np.empty((len(items), n_boot, *block.shape[1:]))
            out[i, done:done + len(w)] = block
        done += len(w)
    return out if out is not None else np.empty((len(items), n_boot))


def difference_with_interval(point_a: float, point_b: float, samples_a, samples_b, level: float = LEVEL) -> dict:
    """``{difference, low, high, p_not_better}``: a score of a minus b, with the percentile interval of
    the paired resampled differences and the share of resamples where a does not beat b."""
    gap = np.asarray(samples_a) - np.asarray(samples_b)
    low, high = _bounds(gap, level)
    return {"difference": point_a - point_b, "low": low, "high": high, "p_not_better": float(np.mean(gap <= 0))}


def bootstrap_macro_f1(y_true, *predictions, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Macro F1 of each prediction on ``n_boot`` resamples of the images: shape (predictions, n_boot).

    Every prediction is scored on the same resamples, so rows can be subtracted (paired).
    """
    return bootstrap_f1_per_class(y_true, *predictions, n_boot=n_boot, seed=seed).mean(2)


def bootstrap_f1_per_class(y_true, *predictions, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """F1 of every class of each prediction on ``n_boot`` resamples: shape (predictions, n_boot, classes).

    The resamples are those of ``bootstrap_macro_f1`` (same seed, same images): a class's
    interval and the macro F1's come from the same draws.
    """
    y = np.asarray(y_true, dtype=bool)
    cells = []
    for pred in predictions:
        p = np.asarray(pred, dtype=bool)
        if p.shape != y.shape:
            raise ValueError(f"prediction shape {p.shape} does not match the labels' {y.shape}")
        cells.append(np.concatenate([y & p, ~y & p, y & ~p], axis=1).astype(float))
    k = y.shape[1]

    def f1s(c, w):
        counts = w @ c
        tp, fp, fn = counts[:, :k], counts[:, k:2 * k], counts[:, 2 * k:]
        denom = 2 * tp + fp + fn
        return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)

    return bootstrap(f1s, cells, len(y), n_boot=n_boot, seed=seed)


def f1_per_class_with_intervals(y_true, y_pred, *, n_boot: int = N_BOOT, seed: int = 0,
                                level: float = LEVEL) -> pd.DataFrame:
    """``f1, low, high`` per class (rows in class order): each class's F1 with its percentile
    bootstrap interval over images, from the resamples the macro F1's interval uses."""
    low, high = _bounds(bootstrap_f1_per_class(y_true, y_pred, n_boot=n_boot, seed=seed)[0], level)
    return pd.DataFrame({"f1": f1_per_class(y_true, y_pred), "low": low, "high": high})


def class_confusion(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    """For each true class, which classes are predicted: (shares, images per true class).

    ``shares[i, j]`` is the share of the images holding class i on which class j is predicted
    although they do not hold j (a class predicted instead of, or beside, i); the diagonal is
    the share predicted i (recall); the last column is the share predicted no class at all.
    Multilabel: an image counts in the row of each of its classes.
    """
    y = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    n = y.sum(0)
    wrong = y.T.astype(float) @ (p & ~y).astype(float)  # [i, j]: images of i predicted j, not holding j
    np.fill_diagonal(wrong, (y & p).sum(0))
    nothing = y.T.astype(float) @ (~p.any(1)).astype(float)
    counts = np.column_stack([wrong, nothing])
    return np.divide(counts, n[:, None], out=np.zeros_like(counts), where=n[:, None] > 0), n


def _bounds(samples: np.ndarray, level: float):
    """Percentile interval over the resamples (the first axis): floats for one score, arrays for many."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def score_with_interval(y_true, y_pred, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """``{macro_f1, low, high, no_skill, n_images}``: the score, its percentile bootstrap interval
    over images, and the no-skill macro F1 on the same images."""
    return scores_with_intervals(y_true, y_pred, n_boot=n_boot, seed=seed, level=level)[0]


def scores_with_intervals(y_true, *predictions, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> list[dict]:
    """``score_with_interval`` of each prediction, from one set of resamples.

    Drawing the resamples costs more than scoring on them, so scoring several predictions in
    one call is several times faster than one call each, with the same numbers.
    """
    y = np.asarray(y_true, dtype=bool)
    if len(y) == 0:
        return [{"macro_f1": float("nan"), "low": float("nan"), "high": float("nan"),
                 "no_skill": float("nan"), "n_images": 0} for _ in predictions]
    samples, no_skill = bootstrap_macro_f1(y, *predictions, n_boot=n_boot, seed=seed), no_skill_macro_f1(y)
    return [dict(zip(("macro_f1", "low", "high"), (macro_f1(y, pred), *_bounds(row, level))),
                 no_skill=no_skill, n_images=int(len(y))) for pred, row in zip(predictions, samples)]


def paired_difference(y_true, pred_a, pred_b, *, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> dict:
    """``{difference, low, high, p_not_better}``: macro F1 of a minus b on the same images, with a
    paired bootstrap interval; ``p_not_better`` is the share of resamples where a does not beat b."""
    y = np.asarray(y_true, dtype=bool)
    a, b = bootstrap_macro_f1(y, pred_a, pred_b, n_boot=n_boot, seed=seed)
    return difference_with_interval(macro_f1(y, pred_a), macro_f1(y, pred_b), a, b, level)

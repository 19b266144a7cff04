"""Multi-label classification metrics, defined as scikit-learn defines them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .classes import CLASS_NAMES


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


def per_class_report(y_true, y_pred, thresholds) -> pd.DataFrame:
    tp, fp, fn = confusion_counts(y_true, y_pred)
    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=(tp + fn) > 0)
    return pd.DataFrame(
        {
            "class": np.arange(len(tp)),
            "name": CLASS_NAMES[: len(tp)],
            "f1": f1_per_class(y_true, y_pred).round(4),
            "precision": precision.round(4),
            "recall": recall.round(4),
            "support": tp + fn,
            "predicted": tp + fp,
            "threshold": np.asarray(thresholds, dtype=float).round(4),
        }
    )

"""Prediction tables a person can read: per image the predicted classes with their names and,
where the labels are known, the true ones and what was missed or added.

Without them, finding the misclassified images means joining a probability table, the
thresholds and the labels by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa.classes import join_names
from hpa.tables import labels_to_matrix, matrix_to_labels, prob_columns, prob_columns_of


def _names(matrix, classes) -> list[str]:
    """Per row, the names of its classes (``join_names``)."""
    return [join_names(np.flatnonzero(row), classes) for row in np.asarray(matrix, dtype=bool)]


def prediction_table(ids, pred, probs, classes, truth=None, **leading) -> pd.DataFrame:
    """``Id``, the ``leading`` columns, [``Target``, ``target_names``], ``Predicted``,
    ``predicted_names``, [``missed``, ``extra``: names of the true classes not predicted and of
    the predicted classes not true], then the probabilities ``p0..p{n-1}`` (``probs``, rows as ``ids``).

    ``pred`` and ``truth`` are boolean (images, classes) matrices, ``classes`` the vocabulary's
    class names; without ``truth`` the bracketed columns are left out.
    """
    pred = np.asarray(pred, dtype=bool)
    if pred.shape[1] != len(classes):
        raise ValueError(f"predictions of {pred.shape[1]} classes, {len(classes)} class names; they must agree")
    table = pd.DataFrame({"Id": np.asarray(ids), **{k: np.asarray(v) for k, v in leading.items()}})
    if truth is not None:
        truth = np.asarray(truth, dtype=bool)
        table["Target"], table["target_names"] = matrix_to_labels(truth), _names(truth, classes)
    table["Predicted"], table["predicted_names"] = matrix_to_labels(pred), _names(pred, classes)
    if truth is not None:
        table["missed"], table["extra"] = _names(truth & ~pred, classes), _names(pred & ~truth, classes)
    probs = pd.DataFrame(np.asarray(probs, dtype=float).round(6), columns=prob_columns(len(classes)))
    return pd.concat([table, probs], axis=1)


def submission_table(sub: pd.DataFrame, test: pd.DataFrame, classes, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """The submission's rows (every test Id) as a prediction table with the ``classes``' names: ``read`` is
    False for an image the pipeline could not read (no probabilities, no class: see results/data/rejected.csv)."""
    probs = test.set_index("Id").reindex(sub["Id"])[prob_columns_of(test, "test probabilities")]
    n = len(classes)
    read = probs.notna().all(axis=1).to_numpy()
    y = None
    if truth is not None:
        known = truth.set_index("Id")["Target"]
        # A test row ingest rejected is unread and has no scored label (results/data/test_labels.csv keeps
        # the kept images'); every image that was read must have one.
        missing = sub.loc[~sub["Id"].isin(known.index) & read, "Id"]
        if len(missing):
            raise ValueError(f"test labels lack Id {missing.iloc[0]} (and {len(missing) - 1} more) of the submission")
        y = labels_to_matrix(known.reindex(sub["Id"]).fillna(""), n)
    return prediction_table(sub["Id"], labels_to_matrix(sub["Predicted"], n), probs, classes, truth=y, read=read)

"""Blending fold and model probabilities, fitting thresholds, writing the submission.

An ensemble averages each model's folds (test) or concatenates them (OOF:
every training image is out-of-fold exactly once), then combines the models:
``mean`` (equal weights), ``weighted`` (fixed weights, or weights fitted on OOF
log-loss), or ``groups``: for each class group of the co-occurrence stage, the
member with the best OOF F1 on that group's classes supplies those classes.

``combination.json`` records the combination, and ``apply_combination`` applies it: the
blend of the submission and of ``predict_new`` on a folder of new images is the same code.
With ``groups`` it names each class's member under the class's name, one entry per class
of the vocabulary in class order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from hpa import thresholds as th
from hpa.groups import resolve_groups  # noqa: F401 (blend's script resolves the groups from here)
from hpa.metrics import macro_f1
from hpa.tables import labels_to_matrix, probability_table, read_probs


def _check_same_ids(tables: list[pd.DataFrame], what: str) -> pd.Index:
    ids = tables[0].index.sort_values()
    for t in tables[1:]:
        if len(t) != len(ids) or not t.index.sort_values().equals(ids):
            raise ValueError(f"{what}: members do not cover the same images; rerun their predict jobs")
    return ids


def model_table(paths: list[str], kind: str) -> pd.DataFrame:
    """One model's probabilities: OOF folds concatenated, test folds averaged."""
    tables = [read_probs(p) for p in paths]
    if kind == "oof":
        table = pd.concat(tables)
        if table.index.duplicated().any():
            raise ValueError(f"{paths[0]}: an image is out-of-fold in two folds; rebuild the folds")
        return table.sort_index()
    return average_folds(tables)


def average_folds(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One model's probabilities on images every fold predicted: the folds' tables (Id index) averaged."""
    ids = _check_same_ids(tables, "test folds")
    return sum(t.loc[ids] for t in tables) / len(tables)


def apply_combination(probs: dict[str, np.ndarray], how: dict) -> np.ndarray:
    """Members' probabilities (``probs[model]``, rows aligned) blended as ``how`` (combination.json) says."""
    members = set(how["sources"].values()) if how["combine"] == "groups" else set(how["weights"])
    if not members <= set(probs):
        raise ValueError(f"the combination uses {sorted(members)}, the probabilities are of {sorted(probs)}; "
                         f"rerun the ensemble's blend job")
    if how["combine"] == "groups":
        # One source per class, in class order (as combine wrote them); a count that differs from the
        # probabilities' is a combination of another vocabulary.
        sources = list(how["sources"].values())
        width = next(iter(probs.values())).shape[1]
        if len(sources) != width:
            raise ValueError(f"the combination names a source for {len(sources)} classes, the probabilities have "
                             f"{width}; rerun the ensemble's blend job")
        return np.stack([probs[model][:, k] for k, model in enumerate(sources)], 1)
    return sum(w * probs[m] for m, w in how["weights"].items())


def fit_weights(oofs: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Convex model weights minimising the blended OOF log-loss (smooth, unlike F1)."""
    stack = np.stack(oofs)
    eps = 1e-6

    def loss(z):
        w = np.exp(z - z.max())
        w /= w.sum()
        p = np.clip(np.tensordot(w, stack, axes=1), eps, 1 - eps)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    z = minimize(loss, np.zeros(len(oofs)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-8}).x
    w = np.exp(z - z.max())
    return w / w.sum()


def group_sources(oofs: dict[str, np.ndarray], y: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Per class, the index of the member trusted for it: the best on its group's OOF macro F1."""
    names = list(oofs)
    source = np.zeros(y.shape[1], dtype=int)
    for classes in groups:
        scores = []
        for name in names:
            p = oofs[name][:, classes]
            pred = th.predict(p, th.fit_per_class(p, y[:, classes]))
            scores.append(macro_f1(y[:, classes], pred))
        source[classes] = int(np.argmax(scores))
    return source


def combine(members: dict[str, dict[str, list[str]]], labels: pd.DataFrame, combine_as: str = "mean",
            weights=None, groups: list[list[int]] | None = None, *,
            classes) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Blend ``members`` ({model: {"oof": [...], "test": [...]}}) into OOF and test tables.

    ``classes``: the vocabulary's class names (their number is the tables' width).
    Returns (oof, test, how) where ``how`` records the weights or the per-class sources used.
    """
    names = list(members)
    oof = {m: model_table(members[m]["oof"], "oof") for m in names}
    test = {m: model_table(members[m]["test"], "test") for m in names}
    oof_ids = _check_same_ids(list(oof.values()), "ensemble OOF")
    test_ids = _check_same_ids(list(test.values()), "ensemble test")
    oof_p = {m: oof[m].loc[oof_ids].to_numpy() for m in names}
    test_p = {m: test[m].loc[test_ids].to_numpy() for m in names}
    n = len(classes)
    for m in names:
        if oof[m].shape[1] != n or test[m].shape[1] != n:
            raise ValueError(f"{m}: probability tables of {oof[m].shape[1]} classes, the vocabulary has {n}; "
                             f"rerun its train and predict jobs")
    y = labels_to_matrix(labels.set_index("Id").loc[oof_ids, "Target"], n).astype(float)

    if combine_as == "groups":
        source = group_sources(oof_p, y, groups or [list(range(n))])
        how = {"combine": "groups", "sources": {classes[k]: names[source[k]] for k in range(n)}}
    else:
        if combine_as == "weighted" and weights == "fit":
            w = fit_weights([oof_p[m] for m in names], y)
        elif combine_as == "weighted":
            w = np.asarray(weights, dtype=float) / np.sum(weights)
        else:
            w = np.full(len(names), 1.0 / len(names))
        # Unrounded: predict_new blends new images with these very weights.
        how = {"combine": combine_as, "weights": {m: float(wi) for m, wi in zip(names, w)}}
    blended_oof, blended_test = apply_combination(oof_p, how), apply_combination(test_p, how)
    return probability_table(oof_ids, blended_oof), probability_table(test_ids, blended_test), how

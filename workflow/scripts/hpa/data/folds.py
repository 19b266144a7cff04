"""Multilabel-stratified k-fold assignment of the training images."""

from __future__ import annotations

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from hpa.tables import InputError, labels_to_matrix


def make_folds(train: pd.DataFrame, n_folds: int, seed: int, groups: dict | None = None, *,
               n_classes: int) -> pd.DataFrame:
    """Assign each image (``Id``, ``Target``) a fold so that every one of the ``n_classes`` classes is spread evenly.

    Iterative stratification (Sechidis et al. 2011) balances each class's
    positives over the folds, which plain KFold cannot do for a class of 11
    images such as Rods & rings.

    ``groups`` maps Ids to a group key (duplicate clusters): the images of a
    group share one fold, so near-identical images never sit on both sides of
    a train/validation split. Groups are stratified as units, on the union of
    their labels; without groups the folds are exactly the ungrouped ones.
    """
    key = train["Id"].map(groups or {})
    key = key.astype(object).where(key.notna(), "\0" + train["Id"])  # ungrouped: a group of its own
    group, n_groups = pd.factorize(key, sort=False)[0], key.nunique()
    if n_groups < n_folds:
        raise InputError(
            f"folds.n={n_folds} but only {n_groups} training images (or duplicate groups); lower folds.n"
        )
    y = np.zeros((n_groups, n_classes), dtype=np.uint8)
    np.maximum.at(y, group, labels_to_matrix(train["Target"], n_classes))
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(n_groups, -1, dtype=int)
    for k, (_, val) in enumerate(splitter.split(np.zeros(n_groups), y)):
        fold[val] = k
    return pd.DataFrame({"Id": train["Id"].to_numpy(), "fold": fold[group]})


def read_groups(*duplicates_csvs) -> dict:
    """Id -> duplicate group, from ``duplicates.csv`` tables (``Id,cluster``: the cleaning stage's, and
    the source's own, results/data/duplicates.csv); clusters sharing an Id merge into one group."""
    parent: dict = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k, path in enumerate(duplicates_csvs):
        table = pd.read_csv(path, dtype={"Id": str}, keep_default_na=False)
        for image_id, cluster in zip(table["Id"], table["cluster"]):
            parent[root(("id", image_id))] = root((k, cluster))
    return {x[1]: str(root(x)) for x in list(parent) if x[0] == "id"}

"""Multilabel-stratified k-fold assignment of the training images."""

from __future__ import annotations

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from .data import InputError, labels_to_matrix


def make_folds(train: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Assign each image (``Id``, ``Target``) a fold so that every class is spread evenly.

    Iterative stratification (Sechidis et al. 2011) balances each class's
    positives over the folds, which plain KFold cannot do for a class of 11
    images such as Rods & rings.
    """
    if len(train) < n_folds:
        raise InputError(
            f"folds.n={n_folds} but only {len(train)} training images; lower folds.n"
        )
    y = labels_to_matrix(train["Target"])
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(train), -1, dtype=int)
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(train)), y)):
        fold[val] = k
    return pd.DataFrame({"Id": train["Id"].to_numpy(), "fold": fold})

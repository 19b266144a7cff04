"""The cell-level model's say in a cell's score (``cells.model``), fitted without cell truth.

The cell model (``hpa.cells.crop_job``: each cell cut out at its field's own resolution, trained per fold
with its image's labels) gives every cell a probability ``q`` per class. What it is worth is measured out
of fold on the training images, where only image labels exist: its cells' scores pooled per image by their
maximum (an image shows a class where one of its cells does) against the image labels, beside the
ensemble's own out-of-fold image probabilities. Per class c:

- ``skill`` of either: average precision over the images, as a share of the way from the class's
  prevalence (no skill) to 1; 0 where the class has no out-of-fold positive;
- the cell model's weight ``w_c = skill_cells / (skill_cells + skill_image)`` (0 where neither has skill).

A cell's score (``hpa.cells.scores``, method ``gated``) is then

    s = (1 - w) p min(1, a / min(t, max a)) + w q,

the image models' gated score (the image's probability ``p`` times the cell-alone gate) and the cell
model's probability, each with as much say as it has skill at the image labels. Both estimate the
chance that the cell shows the class, so the blend is one too; the image's probability is always a
term, so a cell's score is never less informed than its image's, and a class the cell model cannot
see (no skill) keeps the image models' score. Nothing here reads cell truth or the test labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from hpa.cells.scores import aligned, alone_lookup, ensemble_cells
from hpa.tables import labels_to_matrix, prob_matrix, read_manifest


@dataclass(frozen=True)
class CellModel:
    """The fitted blend: per class ``weight``, and the test cells' scores by image."""

    weight: np.ndarray
    test: dict  # image Id -> (cell ids, scores (cells, classes)): hpa.cells.scores.alone_lookup

    def evidence(self, image_id: str, cell_ids) -> tuple:
        """What ``hpa.cells.scores.cell_scores`` takes as ``cell_model`` for these cells of an image: their
        scores (NaN for a cell the model did not score) and the weights."""
        return aligned(self.test, image_id, cell_ids, len(self.weight)), self.weight


def read_folds(oof_paths, test_paths) -> tuple[tuple, tuple]:
    """((ids, cells, probs) of every fold's out-of-fold cells, the same of the test cells averaged over the
    folds) from ``train_cell_model``'s ``oof.csv`` and ``predict_cell_model``'s npz files."""
    oof = pd.concat([pd.read_csv(p, dtype={"Id": str}) for p in oof_paths], ignore_index=True)
    oof_cells = (oof["Id"].to_numpy(str), oof["cell"].to_numpy(np.int64), prob_matrix(oof, "the cell model's OOF"))
    return oof_cells, ensemble_cells(test_paths)


def pooled(ids: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """Each image's highest cell score per class (index: Id)."""
    return pd.DataFrame(probs, index=pd.Index(ids, name="Id")).groupby(level=0).max()


def skill(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per class: (AP - prevalence) / (1 - prevalence), at least 0; 0 without a positive."""
    out = np.zeros(y.shape[1])
    for c in range(y.shape[1]):
        prevalence = y[:, c].mean()
        if 0 < prevalence < 1:
            ap = average_precision_score(y[:, c], scores[:, c])
            out[c] = max(0.0, (ap - prevalence) / (1 - prevalence))
    return out


def fit_blend(oof_cells: tuple, image_oof: pd.DataFrame, labels: pd.DataFrame, n_classes: int):
    """(weight, table): the blend of the module docstring from the cells' out-of-fold scores
    ``(ids, cells, probs)``, the ensemble's out-of-fold probabilities and the training labels (Id, Target),
    over the images all three have; the table has one row per class for the log and the report."""
    cells = pooled(oof_cells[0], oof_cells[2])
    image = image_oof.set_index("Id")
    truth = labels.set_index("Id")["Target"]
    ids = cells.index.intersection(image.index).intersection(truth.index)
    if not len(ids):
        raise ValueError("the cell model's out-of-fold cells share no image with the ensemble's out-of-fold table")
    y = labels_to_matrix(truth.loc[ids], n_classes)
    q = cells.loc[ids].to_numpy()
    s_cells, s_image = skill(q, y), skill(prob_matrix(image.loc[ids].reset_index(), "out-of-fold probabilities"), y)
    total = s_cells + s_image
    weight = np.divide(s_cells, total, out=np.zeros(n_classes), where=total > 0)
    table = pd.DataFrame({"class": np.arange(n_classes), "images": len(ids), "positives": y.sum(0),
                          "skill_cells": s_cells, "skill_image": s_image, "weight": weight}).round(4)
    return weight, table


def fitted(oof_paths, test_paths, image_oof_csv, manifest_csv, n_classes: int):
    """(CellModel, per-class table) from the cell model's files of every fold (``read_folds``), the ensemble's
    out-of-fold table and the manifest's training labels: what cell_labels applies and evaluate_cells scores."""
    oof, test = read_folds(oof_paths, test_paths)
    weight, table = fit_blend(oof, pd.read_csv(image_oof_csv, dtype={"Id": str}),
                              read_manifest(manifest_csv, split="train"), n_classes)
    return CellModel(weight, alone_lookup(*test)), table

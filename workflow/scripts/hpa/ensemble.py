"""Blending fold and model probabilities, fitting thresholds, writing the submission."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .classes import NUM_CLASSES
from .data import labels_to_matrix, matrix_to_labels
from .metrics import macro_f1, per_class_report
from .thresholds import fit, predict

PROB_COLUMNS = [f"p{k}" for k in range(NUM_CLASSES)]


def read_probs(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"Id": str}).set_index("Id")[PROB_COLUMNS]


def _mean_aligned(tables: list[pd.DataFrame], what: str) -> pd.DataFrame:
    ids = tables[0].index
    for t in tables[1:]:
        if len(t) != len(ids) or not t.index.sort_values().equals(ids.sort_values()):
            raise ValueError(f"{what}: members do not cover the same images; rerun their predict jobs")
    return sum(t.loc[ids] for t in tables) / len(tables)


def blend(members: dict[str, list[str]], kind: str) -> pd.DataFrame:
    """Average ``members`` ({model: [per-fold CSV]}) into one probability table.

    ``kind="oof"``: each fold holds different images, so a model's folds are
    concatenated; ``kind="test"``: every fold scored every image, so they are averaged.
    Models are then averaged with equal weight.
    """
    per_model = []
    for model, paths in members.items():
        tables = [read_probs(p) for p in paths]
        if kind == "oof":
            table = pd.concat(tables)
            if table.index.duplicated().any():
                raise ValueError(f"{model}: an image is out-of-fold in two folds; rebuild the folds")
        else:
            table = _mean_aligned(tables, f"{model} test folds")
        per_model.append(table.sort_index())
    return _mean_aligned(per_model, "ensemble").reset_index()


def fit_thresholds(oof: pd.DataFrame, labels: pd.DataFrame, method: str) -> tuple[dict, pd.DataFrame]:
    """Fit on OOF probabilities; return the thresholds record and per-class metrics."""
    truth = labels.set_index("Id").loc[oof["Id"], "Target"]
    y = labels_to_matrix(truth).astype(bool)
    probs = oof[PROB_COLUMNS].to_numpy()
    thresholds = fit(method, probs, y)
    pred = predict(probs, thresholds)
    record = {
        "method": method,
        "thresholds": [round(float(t), 6) for t in thresholds],
        "oof_macro_f1": round(macro_f1(y, pred), 6),
        "n_images": int(len(oof)),
    }
    return record, per_class_report(y, pred, thresholds)


def submission(test: pd.DataFrame, thresholds, all_ids) -> pd.DataFrame:
    """Kaggle ``Id,Predicted`` for every Id in ``all_ids``; images without probabilities get no class."""
    pred = predict(test[PROB_COLUMNS].to_numpy(), thresholds)
    predicted = pd.Series(matrix_to_labels(pred), index=test["Id"].to_numpy())
    return pd.DataFrame({"Id": list(all_ids), "Predicted": predicted.reindex(list(all_ids)).fillna("").to_numpy()})


def score_submission(sub: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Macro F1 of a Kaggle submission against ``Id,Target`` labels."""
    merged = truth.merge(sub, on="Id", how="left", validate="one_to_one").fillna({"Predicted": ""})
    return macro_f1(labels_to_matrix(merged["Target"]), labels_to_matrix(merged["Predicted"]))

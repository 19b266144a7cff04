"""Fitting an ensemble's thresholds on OOF probabilities, and the submission they make."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hpa import thresholds as th
from hpa.metrics import (
    f1_per_class_with_intervals,
    macro_f1,
    per_class_report,
    score_with_interval,
    scores_with_intervals,
)
from hpa.postprocess.predictions import prediction_table
from hpa.tables import labels_to_matrix, matrix_to_labels, prob_matrix


def threshold_inputs(oof: pd.DataFrame, labels: pd.DataFrame, folds: pd.DataFrame):
    """OOF probabilities, their labels, their folds, and the training class frequencies (as many
    classes as ``oof`` has probability columns)."""
    probs = prob_matrix(oof, "OOF probabilities")
    labelled = labels.set_index("Id")
    y = labels_to_matrix(labelled.loc[oof["Id"], "Target"], probs.shape[1]).astype(bool)
    fold = folds.set_index("Id").loc[oof["Id"], "fold"].to_numpy()
    frequency = labels_to_matrix(labelled["Target"], probs.shape[1]).mean(0)
    return probs, y, fold, frequency


def fit_thresholds(oof, labels, folds, method: str, *, classes, top1: bool = False, shrink_factor: float = 1.0,
                   shrink_toward="global") -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit ``method`` on the OOF probabilities; compare every method in-sample and honestly.

    ``classes``: the vocabulary's class names, one per probability column.

    Returns the thresholds record, per-class metrics (in-sample, and honest with intervals), the
    method comparison table, and the OOF prediction table (honest predictions, true labels).
    """
    probs, y, fold, frequency = threshold_inputs(oof, labels, folds)
    if probs.shape[1] != len(classes):
        raise ValueError(f"OOF probabilities of {probs.shape[1]} classes, the vocabulary has {len(classes)}; "
                         f"rerun the ensemble's blend job")
    options = {"shrink_factor": shrink_factor, "shrink_toward": shrink_toward}
    thresholds = th.fit(method, probs, y, frequency, **options)
    pred = th.predict(probs, thresholds, top1)
    honest_pred = th.honest_predictions(method, probs, y, fold, top1=top1, **options)
    compared = {name: (th.predict(probs, th.fit(name, probs, y, frequency), top1),
                       th.honest_predictions(name, probs, y, fold, top1=top1)) for name in th.METHODS}
    # The untuned baseline: nothing is fitted, so in-sample and honest coincide.
    fixed = th.predict(probs, np.full(probs.shape[1], 0.5), top1)
    compared["fixed_0.5"] = (fixed, fixed)
    # The chosen method's row is the method as configured (shrunk too): the record's figures.
    compared[method] = (pred, honest_pred)
    # Every interval from the same bootstrap resamples, drawn once.
    in_sample, honest, *intervals = scores_with_intervals(y, pred, honest_pred, *(h for _, h in compared.values()))
    record = {
        "method": method,
        "thresholds": [round(float(t), 6) for t in thresholds],
        "oof_macro_f1": round(in_sample["macro_f1"], 6),
        "oof_macro_f1_interval": [round(in_sample["low"], 6), round(in_sample["high"], 6)],
        "honest_macro_f1": round(honest["macro_f1"], 6),
        "honest_macro_f1_interval": [round(honest["low"], 6), round(honest["high"], 6)],
        "no_skill_macro_f1": round(honest["no_skill"], 6),
        "top1": top1,
        "shrink": {"factor": shrink_factor, "toward": shrink_toward},
        "train_frequency": [round(float(f), 6) for f in frequency],
        "n_images": int(len(oof)),
        "classes_without_training_images": [c for c, f in zip(classes, frequency) if f == 0],
        **over_classes_with_images("honest", y, honest_pred, frequency),
    }
    rows = [method_row(name, y, fitted, score, chosen=name == method)
            for (name, (fitted, _)), score in zip(compared.items(), intervals)]
    honest_per_class = f1_per_class_with_intervals(y, honest_pred).round(4).add_prefix("honest_")
    per_class = pd.concat([per_class_report(y, pred, thresholds, classes), honest_per_class], axis=1)
    table = prediction_table(oof["Id"], honest_pred, probs, classes, truth=y, fold=fold)
    return record, per_class, pd.DataFrame(rows), table


def over_classes_with_images(kind: str, y, pred, train_frequency) -> dict:
    """``{kind}_classes_with_images``: the macro F1 (interval, no-skill) over the classes that have
    training images, where some class has none; nothing where every class has images.

    The headline macro F1 averages every listed class, so a class with no training image counts
    as F1 0 in it; this is the figure of what the model could learn, given beside it.
    """
    has = np.asarray(train_frequency) > 0
    if has.all() or not has.any():
        return {}
    score = score_with_interval(np.asarray(y)[:, has], np.asarray(pred)[:, has])
    return {f"{kind}_classes_with_images": {
        "macro_f1": round(score["macro_f1"], 6), "interval": [round(score["low"], 6), round(score["high"], 6)],
        "no_skill": round(score["no_skill"], 6), "n_classes": int(has.sum()), "of": int(len(has))}}


def method_row(name: str, y, in_sample, score: dict, *, chosen: bool) -> dict:
    """One line of ``threshold_methods.csv``: in-sample and honest macro F1 (``score``: the honest
    predictions' ``score_with_interval``), the honest interval, no-skill."""
    return {"method": name, "oof_macro_f1": round(macro_f1(y, in_sample), 6),
            "honest_macro_f1": round(score["macro_f1"], 6), "honest_low": round(score["low"], 6),
            "honest_high": round(score["high"], 6), "no_skill_macro_f1": round(score["no_skill"], 6),
            "chosen": chosen}


OUT_OF_FOLD = "out_of_fold"
MATCHED = "matched_on_these_images"


def images_to_match(train_frequency) -> int:
    """The fewest images on which matching the training rates predicts the rarest class at all:
    1 / its frequency (match_distribution predicts a class on round(frequency * n) images)."""
    return math.ceil(1 / min(f for f in train_frequency if f > 0))


def applied_thresholds(record: dict, probs: np.ndarray, min_images: int = 0) -> tuple[np.ndarray, str]:
    """The thresholds applied to unlabelled ``probs``, and where they come from.

    As fitted on the OOF probabilities (``OUT_OF_FOLD``), except for match_distribution:
    re-matched to the training rates on ``probs`` themselves (``MATCHED``) when there
    are at least ``min_images`` of them; on fewer, its OOF thresholds, said so.
    """
    if record["method"] == "match_distribution" and len(probs) >= max(min_images, 1):
        return th.match_distribution(probs, record["train_frequency"]), MATCHED
    source = OUT_OF_FOLD
    if record["method"] == "match_distribution":
        source += f" (match_distribution needs at least {min_images} images to match rates; these are {len(probs)})"
    return np.asarray(record["thresholds"]), source


def predict_classes(probs: np.ndarray, record: dict, min_images: int = 0) -> tuple[np.ndarray, str]:
    """The ensemble's classes on unlabelled ``probs`` (boolean matrix), and where its thresholds come from."""
    thresholds, source = applied_thresholds(record, probs, min_images)
    return th.predict(probs, thresholds, record.get("top1", False)), source


def submission(test: pd.DataFrame, record: dict, all_ids) -> pd.DataFrame:
    """Kaggle ``Id,Predicted`` for every Id in ``all_ids``; images without probabilities get no class."""
    pred, _ = predict_classes(prob_matrix(test, "test probabilities"), record)
    predicted = pd.Series(matrix_to_labels(pred), index=test["Id"].to_numpy())
    return pd.DataFrame({"Id": list(all_ids), "Predicted": predicted.reindex(list(all_ids)).fillna("").to_numpy()})


def submission_matrices(sub: pd.DataFrame, truth: pd.DataFrame, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of every Id in ``truth`` as boolean (images, ``n_classes``) matrices; a missing
    Id predicts nothing."""
    merged = truth.merge(sub, on="Id", how="left", validate="one_to_one").fillna({"Predicted": ""})
    return (labels_to_matrix(merged["Target"], n_classes).astype(bool),
            labels_to_matrix(merged["Predicted"], n_classes).astype(bool))

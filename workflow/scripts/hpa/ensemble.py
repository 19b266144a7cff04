"""Blending fold and model probabilities, fitting thresholds, writing the submission.

An ensemble averages each model's folds (test) or concatenates them (OOF:
every training image is out-of-fold exactly once), then combines the models:
``mean`` (equal weights), ``weighted`` (fixed weights, or weights fitted on OOF
log-loss), or ``groups``: for each class group of the co-occurrence stage, the
member with the best OOF F1 on that group's classes supplies those classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import minimize

from . import thresholds as th
from .classes import CLASS_NAMES, GROUP_PRESETS, NUM_CLASSES
from .data import labels_to_matrix, matrix_to_labels
from .metrics import macro_f1, per_class_report, score_with_interval

PROB_COLUMNS = [f"p{k}" for k in range(NUM_CLASSES)]


def probability_table(ids, probs: np.ndarray) -> pd.DataFrame:
    """``Id,p0..p27``: the format of every probability table the pipeline writes."""
    return pd.DataFrame(np.asarray(probs).round(6), columns=PROB_COLUMNS).assign(Id=np.asarray(ids))[
        ["Id", *PROB_COLUMNS]
    ]


def read_probs(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"Id": str}).set_index("Id")[PROB_COLUMNS]


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
    ids = _check_same_ids(tables, "test folds")
    return sum(t.loc[ids] for t in tables) / len(tables)


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


def resolve_groups(spec, groups_file=None) -> list[list[int]]:
    """Class groups from the co-occurrence stage's file, a preset name, or explicit lists; a partition of the 28."""
    if groups_file:
        with open(groups_file) as fh:
            groups = [g["classes"] for g in yaml.safe_load(fh)["groups"]]
    elif isinstance(spec, str):
        if spec not in GROUP_PRESETS:
            raise ValueError(f"groups: {spec!r} is not a preset; choose cooccurrence, {sorted(GROUP_PRESETS)}, "
                             f"or give lists of class numbers")
        groups = GROUP_PRESETS[spec]
    else:
        groups = spec
    groups = [[int(k) for k in g] for g in groups]
    listed = sorted(k for g in groups for k in g)
    if listed != list(range(NUM_CLASSES)):
        missing = sorted(set(range(NUM_CLASSES)) - set(listed))
        twice = sorted({k for k in listed if listed.count(k) > 1})
        raise ValueError(f"groups must put each of the {NUM_CLASSES} classes in exactly one group; "
                         f"missing {missing}, repeated {twice}, out of range {sorted(set(listed) - set(range(NUM_CLASSES)))}")
    return groups


def group_sources(oofs: dict[str, np.ndarray], y: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """Per class, the index of the member trusted for it: the best on its group's OOF macro F1."""
    names = list(oofs)
    source = np.zeros(NUM_CLASSES, dtype=int)
    for classes in groups:
        scores = []
        for name in names:
            p = oofs[name][:, classes]
            pred = th.predict(p, th.fit_per_class(p, y[:, classes]))
            scores.append(macro_f1(y[:, classes], pred))
        source[classes] = int(np.argmax(scores))
    return source


def combine(members: dict[str, dict[str, list[str]]], labels: pd.DataFrame, combine_as: str = "mean",
            weights=None, groups: list[list[int]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Blend ``members`` ({model: {"oof": [...], "test": [...]}}) into OOF and test tables.

    Returns (oof, test, how) where ``how`` records the weights or the per-class sources used.
    """
    names = list(members)
    oof = {m: model_table(members[m]["oof"], "oof") for m in names}
    test = {m: model_table(members[m]["test"], "test") for m in names}
    oof_ids = _check_same_ids(list(oof.values()), "ensemble OOF")
    test_ids = _check_same_ids(list(test.values()), "ensemble test")
    oof_p = {m: oof[m].loc[oof_ids].to_numpy() for m in names}
    test_p = {m: test[m].loc[test_ids].to_numpy() for m in names}
    y = labels_to_matrix(labels.set_index("Id").loc[oof_ids, "Target"]).astype(float)

    if combine_as == "groups":
        source = group_sources(oof_p, y, groups or [list(range(NUM_CLASSES))])
        pick = lambda tables: np.stack([tables[names[source[k]]][:, k] for k in range(NUM_CLASSES)], 1)
        blended_oof, blended_test = pick(oof_p), pick(test_p)
        how = {"combine": "groups", "sources": {CLASS_NAMES[k]: names[source[k]] for k in range(NUM_CLASSES)}}
    else:
        if combine_as == "weighted" and weights == "fit":
            w = fit_weights([oof_p[m] for m in names], y)
        elif combine_as == "weighted":
            w = np.asarray(weights, dtype=float) / np.sum(weights)
        else:
            w = np.full(len(names), 1.0 / len(names))
        blended_oof = sum(wi * oof_p[m] for wi, m in zip(w, names))
        blended_test = sum(wi * test_p[m] for wi, m in zip(w, names))
        how = {"combine": combine_as, "weights": {m: round(float(wi), 6) for m, wi in zip(names, w)}}

    return probability_table(oof_ids, blended_oof), probability_table(test_ids, blended_test), how


def threshold_inputs(oof: pd.DataFrame, labels: pd.DataFrame, folds: pd.DataFrame):
    """OOF probabilities, their labels, their folds, and the training class frequencies."""
    labelled = labels.set_index("Id")
    y = labels_to_matrix(labelled.loc[oof["Id"], "Target"]).astype(bool)
    fold = folds.set_index("Id").loc[oof["Id"], "fold"].to_numpy()
    frequency = labels_to_matrix(labelled["Target"]).mean(0)
    return oof[PROB_COLUMNS].to_numpy(), y, fold, frequency


def fit_thresholds(oof, labels, folds, method: str, *, top1: bool = False, shrink_factor: float = 1.0,
                   shrink_toward="global") -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Fit ``method`` on the OOF probabilities; compare every method in-sample and honestly.

    Returns the thresholds record, per-class metrics and the method comparison table.
    """
    probs, y, fold, frequency = threshold_inputs(oof, labels, folds)
    options = {"shrink_factor": shrink_factor, "shrink_toward": shrink_toward}
    thresholds = th.fit(method, probs, y, frequency, **options)
    pred = th.predict(probs, thresholds, top1)
    in_sample = score_with_interval(y, pred)
    honest = score_with_interval(y, th.honest_predictions(method, probs, y, fold, top1=top1, **options))
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
    }
    rows = [method_row(name, y, th.predict(probs, th.fit(name, probs, y, frequency), top1),
                       th.honest_predictions(name, probs, y, fold, top1=top1), chosen=name == method)
            for name in th.METHODS]
    # The untuned baseline: nothing is fitted, so in-sample and honest coincide.
    fixed = th.predict(probs, np.full(NUM_CLASSES, 0.5), top1)
    rows.append(method_row("fixed_0.5", y, fixed, fixed, chosen=False))
    return record, per_class_report(y, pred, thresholds), pd.DataFrame(rows)


def method_row(name: str, y, in_sample, honest, *, chosen: bool) -> dict:
    """One line of ``threshold_methods.csv``: in-sample and honest macro F1, the honest interval, no-skill."""
    score = score_with_interval(y, honest)
    return {"method": name, "oof_macro_f1": round(macro_f1(y, in_sample), 6),
            "honest_macro_f1": round(score["macro_f1"], 6), "honest_low": round(score["low"], 6),
            "honest_high": round(score["high"], 6), "no_skill_macro_f1": round(score["no_skill"], 6),
            "chosen": chosen}


def test_thresholds(record: dict, test: pd.DataFrame) -> np.ndarray:
    """The thresholds applied to test: as fitted, or re-matched to test rates for match_distribution."""
    if record["method"] == "match_distribution":
        return th.match_distribution(test[PROB_COLUMNS].to_numpy(), record["train_frequency"])
    return np.asarray(record["thresholds"])


def submission(test: pd.DataFrame, record: dict, all_ids) -> pd.DataFrame:
    """Kaggle ``Id,Predicted`` for every Id in ``all_ids``; images without probabilities get no class."""
    pred = th.predict(test[PROB_COLUMNS].to_numpy(), test_thresholds(record, test), record.get("top1", False))
    predicted = pd.Series(matrix_to_labels(pred), index=test["Id"].to_numpy())
    return pd.DataFrame({"Id": list(all_ids), "Predicted": predicted.reindex(list(all_ids)).fillna("").to_numpy()})


def submission_matrices(sub: pd.DataFrame, truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of every Id in ``truth`` as boolean matrices; a missing Id predicts nothing."""
    merged = truth.merge(sub, on="Id", how="left", validate="one_to_one").fillna({"Predicted": ""})
    return labels_to_matrix(merged["Target"]).astype(bool), labels_to_matrix(merged["Predicted"]).astype(bool)


def score_submission(sub: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Macro F1 of a Kaggle submission against ``Id,Target`` labels."""
    return macro_f1(*submission_matrices(sub, truth))

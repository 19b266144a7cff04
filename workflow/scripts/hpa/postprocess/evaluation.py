"""Scoring against held-back test labels (the demo's), which no threshold or model ever saw.

Every score goes out with its 95% bootstrap interval over images and the no-skill macro F1
of the same images; ensembles are compared with each other by paired bootstrap differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa import thresholds as th
from hpa.metrics import paired_difference, scores_with_intervals
from hpa.postprocess.submission import over_classes_with_images, submission_matrices, threshold_inputs
from hpa.tables import prob_matrix


def _rounded(values) -> list[float]:
    return [round(float(v), 6) for v in values]


def evaluate_on_test(*, submission, record, oof, test, labels, folds, methods, truth):
    """The submission's test macro F1 (interval, no-skill), and each threshold method's, beside the OOF estimates.

    Every score is of every test Id in the labels' order (an image the pipeline could not read
    predicts nothing, as in the submission) and from the same resamples, so the chosen method's
    row of the table is the submission's score with the same interval.
    """
    probs, y, _, frequency = threshold_inputs(oof, labels, folds)
    truth_y, sub_y = submission_matrices(submission, truth, probs.shape[1])
    row_of = pd.Index(test["Id"]).get_indexer(truth["Id"])  # -1: no probabilities (unreadable)
    read = row_of >= 0
    test_probs = prob_matrix(test, "test probabilities")[row_of[read]]
    predictions = {}
    for name in [*th.METHODS, "fixed_0.5"]:
        predictions[name] = np.zeros_like(truth_y)
        predictions[name][read] = th.predict(test_probs, th.for_test(name, probs, y, frequency, test_probs),
                                             record.get("top1", False))
    predictions[record["method"]] = sub_y  # as configured (shrink, top1): the submission itself
    scores = dict(zip(predictions, scores_with_intervals(truth_y, *predictions.values())))
    per_method = methods.assign(**{
        column: methods["method"].map(lambda m, key=key: round(scores[m][key], 6))
        for column, key in (("test_macro_f1", "macro_f1"), ("test_low", "low"), ("test_high", "high"))
    })
    test_score = scores[record["method"]]
    summary = {
        "test_macro_f1": round(test_score["macro_f1"], 6),
        "test_macro_f1_interval": _rounded([test_score["low"], test_score["high"]]),
        "test_no_skill_macro_f1": round(test_score["no_skill"], 6),
        "test_minus_no_skill": _difference(paired_difference(truth_y, sub_y, np.ones_like(truth_y))),
        "n_test_images": test_score["n_images"],
        **over_classes_with_images("test", truth_y, sub_y, frequency),
        **{k: record[k] for k in ("oof_macro_f1", "honest_macro_f1", "honest_macro_f1_interval",
                                  "no_skill_macro_f1", "method", "classes_without_training_images",
                                  "honest_classes_with_images") if k in record},
    }
    return summary, per_method


def _difference(d: dict) -> dict:
    return {"difference": round(d["difference"], 6), "interval": _rounded([d["low"], d["high"]]),
            "p_not_better": round(d["p_not_better"], 4)}


def job_seconds(benchmark_tsvs) -> float:
    """Wall seconds of jobs, summed from their Snakemake benchmark files."""
    return float(sum(pd.read_csv(path, sep="\t")["s"].sum() for path in benchmark_tsvs))


def comparison_table(ensembles: dict[str, dict], test_predictions: dict[str, np.ndarray] | None = None,
                     y_test: np.ndarray | None = None) -> pd.DataFrame:
    """One row per ensemble: models, threshold method, OOF and honest macro F1 (interval, no-skill),
    test F1 (demo; interval, no-skill, paired difference to the best by honest F1) and job time.

    ``ensembles[name]`` holds ``models``, ``thresholds`` (the fit_thresholds
    record), optionally ``evaluation`` (the evaluate_test record), and
    ``train_tsv`` / ``predict_tsv`` (benchmark files of the jobs it needs).
    ``test_predictions`` (name -> boolean matrix of the submission, rows as
    ``y_test``) adds the paired differences.
    """
    rows = []
    for name, e in ensembles.items():
        record, evaluation = e["thresholds"], e.get("evaluation") or {}
        honest = record.get("honest_macro_f1_interval", [None, None])
        test = evaluation.get("test_macro_f1_interval", [None, None])
        rows.append({
            "ensemble": name,
            "models": " ".join(e["models"]),
            "method": record["method"],
            "oof_macro_f1": record["oof_macro_f1"],
            "honest_macro_f1": record["honest_macro_f1"],
            "honest_low": honest[0],
            "honest_high": honest[1],
            "oof_no_skill": record.get("no_skill_macro_f1"),
            "test_macro_f1": evaluation.get("test_macro_f1"),
            "test_low": test[0],
            "test_high": test[1],
            "test_no_skill": evaluation.get("test_no_skill_macro_f1"),
            # Where a listed class has no training image, the macro F1 over the classes that have them.
            "classes_without_images": ";".join(record.get("classes_without_training_images", [])),
            "honest_classes_with_images": (record.get("honest_classes_with_images") or {}).get("macro_f1"),
            "test_classes_with_images": (evaluation.get("test_classes_with_images") or {}).get("macro_f1"),
            "train_s": round(job_seconds(e["train_tsv"]), 1),
            "predict_s": round(job_seconds(e["predict_tsv"]), 1),
        })
    table = pd.DataFrame(rows).sort_values("honest_macro_f1", ascending=False, kind="stable")
    if test_predictions:
        best = table["ensemble"].iloc[0]
        diffs = [paired_difference(y_test, test_predictions[name], test_predictions[best]) for name in table["ensemble"]]
        table = table.assign(
            test_minus_best=[round(d["difference"], 6) for d in diffs],
            minus_best_low=[round(d["low"], 6) for d in diffs],
            minus_best_high=[round(d["high"], 6) for d in diffs],
        )
    return table

"""Scoring against held-back test labels (the demo's), which no threshold or model ever saw."""

from __future__ import annotations

import pandas as pd

from . import thresholds as th
from .data import labels_to_matrix
from .ensemble import PROB_COLUMNS, score_submission, threshold_inputs
from .metrics import macro_f1


def evaluate_on_test(*, submission, record, oof, test, labels, folds, methods, truth):
    """The submission's test macro F1, and each threshold method's, beside its OOF estimates."""
    probs, y, _, frequency = threshold_inputs(oof, labels, folds)
    y_test = labels_to_matrix(truth.set_index("Id").loc[test["Id"], "Target"])
    test_probs = test[PROB_COLUMNS].to_numpy()
    test_f1 = {}
    for name in th.METHODS:
        if name == "match_distribution":
            t = th.match_distribution(test_probs, frequency)
        else:
            t = th.fit(name, probs, y, frequency)
        test_f1[name] = round(macro_f1(y_test, th.predict(test_probs, t, record.get("top1", False))), 6)
    per_method = methods.assign(test_macro_f1=methods["method"].map(test_f1))
    fixed = methods["method"] == "fixed_0.5"
    fixed_pred = th.predict(test_probs, [0.5] * test_probs.shape[1], record.get("top1", False))
    per_method.loc[fixed, "test_macro_f1"] = round(macro_f1(y_test, fixed_pred), 6)
    summary = {
        # Every test Id counts, including images the pipeline could not read.
        "test_macro_f1": round(score_submission(submission, truth), 6),
        "oof_macro_f1": record["oof_macro_f1"],
        "honest_macro_f1": record["honest_macro_f1"],
        "method": record["method"],
    }
    return summary, per_method


def job_seconds(benchmark_tsvs) -> float:
    """Wall seconds of jobs, summed from their Snakemake benchmark files."""
    return float(sum(pd.read_csv(path, sep="\t")["s"].sum() for path in benchmark_tsvs))


def comparison_table(ensembles: dict[str, dict]) -> pd.DataFrame:
    """One row per ensemble: its models, threshold method, OOF and honest macro F1, test F1 (demo) and job time.

    ``ensembles[name]`` holds ``models``, ``thresholds`` (the fit_thresholds
    record), optionally ``evaluation`` (the evaluate_test record), and
    ``train_tsv`` / ``predict_tsv`` (benchmark files of the jobs it needs).
    """
    rows = []
    for name, e in ensembles.items():
        record = e["thresholds"]
        rows.append({
            "ensemble": name,
            "models": " ".join(e["models"]),
            "method": record["method"],
            "oof_macro_f1": record["oof_macro_f1"],
            "honest_macro_f1": record["honest_macro_f1"],
            "test_macro_f1": (e.get("evaluation") or {}).get("test_macro_f1"),
            "train_s": round(job_seconds(e["train_tsv"]), 1),
            "predict_s": round(job_seconds(e["predict_tsv"]), 1),
        })
    return pd.DataFrame(rows).sort_values("honest_macro_f1", ascending=False)

"""The write-ups' techniques, measured: each as a paired test macro F1 difference with its interval.

Run after the benchmark config has run to the end::

    snakemake --cores 2 --configfile config/benchmark.yaml --directory runs/benchmark
    python -m bench ablations runs/benchmark

It reads the run's submissions, ensemble tables, per-fold predictions and the demo's
held-aside test labels, and writes ``results/evaluation/ablations.csv`` in the run
(and prints it as a markdown table). Each row scores two predictions of the same test
images on the same bootstrap resamples, so "real" means the 95% interval of the
difference excludes zero, at this scale and on this synthetic data.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from hpa import thresholds as th
from hpa.classes import HPA
from hpa.files import read_json, write_csv
from hpa.metrics import macro_f1, no_skill_macro_f1, paired_difference
from hpa.postprocess.submission import submission_matrices, threshold_inputs
from hpa.tables import labels_to_matrix, prob_matrix, read_labels, read_manifest

BASE = "focal_os"  # the benchmark's reference system: ResNet18, focal loss, oversampling, flip TTA
BASE_VIEW = "flips_mean"  # its TTA views and aggregate (config/benchmark.yaml)

# (question, technique on, technique off): each side names an ensemble's submission,
# "ensemble@method" (that threshold method on the ensemble's probabilities) or
# "ensemble#fold" (one fold's model with the ensemble's thresholds).
ABLATIONS = [
    ("rare-class oversampling", BASE, "focal"),
    ("focal vs BCE (both oversampled)", BASE, "bce_os"),
    ("focal + Lovasz vs focal", "focal_lovasz_os", BASE),
    ("focal + Lovasz vs BCE", "focal_lovasz_os", "bce_os"),
    ("1st-place loss (focal + Lovasz + hard BCE) vs focal", "first_place", BASE),
    ("TTA flips vs none", BASE, f"{BASE}_tta_none"),
    ("TTA dihedral vs none", f"{BASE}_tta_dihedral", f"{BASE}_tta_none"),
    ("TTA dihedral vs flips", f"{BASE}_tta_dihedral", BASE),
    ("fold ensemble vs one fold", BASE, f"{BASE}#0"),
    ("model ensemble (mean) vs best single model", "mean_all", "best_single"),
    ("epoch kept: last vs best on the validation fold", BASE, f"{BASE}_keep_best"),
    ("per-image vs dataset normalisation", BASE, f"{BASE}_dataset_norm"),
    ("one-cycle at lr 4e-3 vs cosine at lr 2e-3", BASE, f"{BASE}_cosine"),
    *[(f"threshold per_class vs {m}", f"{BASE}@per_class", f"{BASE}@{m}")
      for m in [*th.METHODS, "fixed_0.5"] if m != "per_class"],
]


class Run:
    """What a finished benchmark run left on disk, as boolean test predictions in label order."""

    def __init__(self, root):
        self.root = Path(root)
        truth = read_labels(self.root / "resources/demo/test_labels.csv", HPA)
        self.truth = truth
        self.y = labels_to_matrix(truth["Target"], HPA.n_classes).astype(bool)
        self.labels = read_manifest(self.root / "results/data/manifest.csv", split="train")
        self.folds = pd.read_csv(self.root / "results/splits/folds.csv", dtype={"Id": str})
        self.comparison = pd.read_csv(self.root / "results/evaluation/comparison.csv")

    def _aligned(self, ids, pred) -> np.ndarray:
        """Rows in test-label order; an image without a prediction predicts nothing (as in scoring)."""
        table = pd.DataFrame(pred, index=pd.Index(ids, name="Id"))
        return table.reindex(self.truth["Id"]).fillna(False).to_numpy(dtype=bool)

    def _table(self, path) -> pd.DataFrame:
        return pd.read_csv(self.root / path, dtype={"Id": str})

    def prediction(self, spec: str) -> np.ndarray:
        if spec == "best_single":
            spec = self.best_single()
        if "@" in spec:
            ensemble, method = spec.split("@")
            return self.with_method(ensemble, method)
        if "#" in spec:
            ensemble, fold = spec.split("#")
            return self.one_fold(ensemble, int(fold))
        sub = pd.read_csv(self.root / f"results/submission/{spec}.csv", dtype=str, keep_default_na=False)
        return submission_matrices(sub, self.truth, HPA.n_classes)[1]

    def with_method(self, ensemble: str, method: str) -> np.ndarray:
        oof, test = (self._table(f"results/ensembles/{ensemble}/{k}.csv") for k in ("oof", "test"))
        probs, y, _, frequency = threshold_inputs(oof, self.labels, self.folds)
        test_probs = prob_matrix(test)
        top1 = read_json(self.root / f"results/thresholds/{ensemble}.json").get("top1", False)
        t = th.for_test(method, probs, y, frequency, test_probs)
        return self._aligned(test["Id"], th.predict(test_probs, t, top1))

    def one_fold(self, ensemble: str, fold: int) -> np.ndarray:
        """The fold's model alone on test, with the thresholds the ensemble fitted (its only member)."""
        ens = self.comparison.set_index("ensemble").loc[ensemble]
        (model,) = ens["models"].split()
        record = read_json(self.root / f"results/thresholds/{ensemble}.json")
        test = self._table(f"results/predictions/{model}/fold{fold}/{BASE_VIEW}/test.csv")
        return self._aligned(test["Id"], th.predict(prob_matrix(test), record["thresholds"],
                                                     record.get("top1", False)))

    def best_single(self) -> str:
        """The single-model ensemble with the best honest OOF estimate (chosen without test labels)."""
        single = self.comparison[~self.comparison["models"].str.contains(" ")]
        single = single[~single["ensemble"].str.contains("_tta_")]
        return str(single.sort_values("honest_macro_f1", ascending=False)["ensemble"].iloc[0])


def ablation_table(run: Run) -> pd.DataFrame:
    """Every row of ABLATIONS whose two sides the run has (a smaller config may leave systems out)."""
    rows = []
    present = set(run.comparison["ensemble"]) | {"best_single"}
    for question, on, off in ABLATIONS:
        if not {re.split("[@#]", on)[0], re.split("[@#]", off)[0]} <= present:
            print(f"skipped (not in this run): {question}")
            continue
        a, b = run.prediction(on), run.prediction(off)
        d = paired_difference(run.y, a, b)
        rows.append({
            "question": question, "on": on if on != "best_single" else run.best_single(),
            "off": off if off != "best_single" else run.best_single(),
            "test_on": round(macro_f1(run.y, a), 4), "test_off": round(macro_f1(run.y, b), 4),
            "difference": round(d["difference"], 4), "low": round(d["low"], 4), "high": round(d["high"], 4),
            "verdict": "helps" if d["low"] > 0 else "hurts" if d["high"] < 0 else "within noise",
        })
    return pd.DataFrame(rows)


def systems_table(run: Run) -> pd.DataFrame:
    """Every ensemble of the run: honest and test macro F1 with intervals, no-skill, paired gap to the best."""
    c = run.comparison
    def ci(v, lo, hi):
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"

    return pd.DataFrame({
        "ensemble": c["ensemble"], "models": c["models"], "threshold": c["method"],
        "honest OOF [95% CI]": [ci(*r) for r in zip(c["honest_macro_f1"], c["honest_low"], c["honest_high"])],
        "test [95% CI]": [ci(*r) for r in zip(c["test_macro_f1"], c["test_low"], c["test_high"])],
        "test no-skill": c["test_no_skill"].round(3),
        "test − best [95% CI]": [ci(*r) for r in zip(c["test_minus_best"], c["minus_best_low"], c["minus_best_high"])],
        "train s": c["train_s"], "predict s": c["predict_s"],
    })


def markdown(table: pd.DataFrame) -> str:
    head = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in table.itertuples(index=False))


def main(root: str = "runs/benchmark") -> pd.DataFrame:
    run = Run(root)
    table = ablation_table(run)
    write_csv(table, Path(root) / "results/evaluation/ablations.csv")
    print(f"{len(run.y)} test images; no-skill macro F1 {no_skill_macro_f1(run.y):.4f}\n")
    print(markdown(systems_table(run)))
    print(markdown(table))
    return table

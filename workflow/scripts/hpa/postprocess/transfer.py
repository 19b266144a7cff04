"""Label transfer: an image takes its nearest training neighbour's labels when they are similar enough.

The neighbours come from ``hpa.embedding.neighbours`` (ArcFace embeddings). When the
cosine similarity reaches a threshold, the image's probabilities are replaced
by the neighbour's labels (``replace``, as the 1st place did) or blended with
them (``mean``: (1 - w) p + w y). The threshold is fitted on the OOF
neighbours, each searched with an embedding that never saw it: the candidate
kept is the one whose transferred OOF probabilities score best after the
ensemble's own threshold fit (the one ``fit_thresholds`` will then make), and
"never transfer" is a candidate, so the transfer cannot lower the OOF macro F1.
Fitting both thresholds on k - 1 folds and scoring the held-out fold says how
much of that gain is real (``honest_macro_f1_*`` in transfer.json).

Because the folds keep each pHash duplicate cluster together, OOF images have
fewer near-copies among their search rows than test images do: the OOF fit
says how similar is similar enough, not how many test images will pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa import thresholds as th
from hpa.files import write_csv, write_json
from hpa.metrics import macro_f1
from hpa.postprocess.submission import threshold_inputs
from hpa.tables import labels_to_matrix, prob_matrix, probability_table, read_manifest

log = logging.getLogger(__name__)

CANDIDATES = 64  # similarity thresholds tried, at quantiles of the OOF similarities


@dataclass(frozen=True)
class TransferSettings:
    """An ensemble's transfer keys, and the threshold keys its similarity threshold is fitted under."""

    mode: str = "replace"
    weight: float = 0.5
    threshold: str = "per_class"
    top1: bool = False
    shrink: float = 1.0
    shrink_toward: float | str = "global"

    @classmethod
    def from_ensemble(cls, ens: dict) -> TransferSettings:
        return cls(mode=ens["transfer_mode"], weight=ens["transfer_weight"], threshold=ens["threshold"],
                   top1=ens["top1"], shrink=ens["shrink"], shrink_toward=ens["shrink_toward"])


MODES = {
    "replace": lambda probs, neighbour, weight: neighbour,
    "mean": lambda probs, neighbour, weight: (1.0 - weight) * probs + weight * neighbour,
}


def apply_transfer(probs: np.ndarray, neighbour_y: np.ndarray, transferred: np.ndarray, mode: str,
                   weight: float = 0.5) -> np.ndarray:
    """``probs`` with the ``transferred`` rows replaced by, or blended with, their neighbours' labels."""
    if mode not in MODES:
        raise ValueError(f"unknown transfer_mode {mode!r}; choose one of {sorted(MODES)}")
    out = np.array(probs, dtype=float, copy=True)
    out[transferred] = MODES[mode](out[transferred], neighbour_y[transferred].astype(float), weight)
    return out


def fit_and_score(fit_probs, fit_y, probs, y, frequency, s: TransferSettings) -> float:
    """Macro F1 on (``probs``, ``y``) of the ensemble's class thresholds fitted on (``fit_probs``, ``fit_y``)."""
    cuts = th.fit(s.threshold, fit_probs, fit_y, frequency, shrink_factor=s.shrink, shrink_toward=s.shrink_toward)
    return macro_f1(y, th.predict(probs, cuts, s.top1))


def threshold_score(y: np.ndarray, frequency: np.ndarray, s: TransferSettings):
    """OOF macro F1 after the ensemble's threshold fit on the same images, as ``fit_thresholds`` reports it."""
    return lambda probs: fit_and_score(probs, y, probs, y, frequency, s)


def candidate_cuts(similarity: np.ndarray, n: int = CANDIDATES) -> np.ndarray:
    """Observed similarities at ``n`` quantiles, highest first (fewest transfers first)."""
    finite = similarity[np.isfinite(similarity)]
    if not len(finite):
        return np.zeros(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, n), method="higher"))[::-1]


def same_label_set(neighbour_y: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the ``mask`` images whose neighbour has exactly their label set (NaN if none)."""
    return float((neighbour_y[mask] == y[mask]).all(axis=1).mean()) if mask.any() else float("nan")


def fit_similarity_threshold(probs, y, neighbour_y, similarity, score, mode: str, weight: float,
                             n: int = CANDIDATES) -> tuple[float | None, pd.DataFrame]:
    """The cosine threshold maximising ``score`` of the transferred OOF probabilities; None = never transfer.

    Candidates go from the highest similarity down and a lower one must score
    strictly better, so among equal scores the fewest transfers win.
    """
    rows = [{"threshold": None, "transferred": 0, "same_label_set": np.nan, "oof_macro_f1": score(probs)}]
    for cut in candidate_cuts(similarity, n):
        mask = similarity >= cut
        rows.append({"threshold": float(cut), "transferred": int(mask.sum()),
                     "same_label_set": same_label_set(neighbour_y, y, mask),
                     "oof_macro_f1": score(apply_transfer(probs, neighbour_y, mask, mode, weight))})
    best = int(np.argmax([r["oof_macro_f1"] for r in rows]))  # the first of equal maxima
    return rows[best]["threshold"], pd.DataFrame(rows).assign(chosen=np.arange(len(rows)) == best)


def honest_estimate(probs, y, neighbour_y, similarity, fold, frequency, s: TransferSettings) -> dict:
    """Held-out macro F1 without and with transfer, averaged over folds.

    For each fold, the similarity threshold and the class thresholds are fitted
    on the other folds' OOF images and scored on this fold's: how much of the
    in-sample gain is real rather than a lucky cut.
    """
    before, after = [], []
    for k in np.unique(fold):
        held, rest = fold == k, fold != k
        cut, _ = fit_similarity_threshold(probs[rest], y[rest], neighbour_y[rest], similarity[rest],
                                          threshold_score(y[rest], frequency, s), s.mode, s.weight)
        moved, _ = transfer_at(probs, neighbour_y, similarity, cut, s)
        before.append(fit_and_score(probs[rest], y[rest], probs[held], y[held], frequency, s))
        after.append(fit_and_score(moved[rest], y[rest], moved[held], y[held], frequency, s))
    return {"honest_macro_f1_before": round(float(np.mean(before)), 6),
            "honest_macro_f1_after": round(float(np.mean(after)), 6)}


def neighbour_arrays(neighbours: pd.DataFrame, split: str, ids, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour label matrix (``n_classes`` wide) and similarity of ``ids``; an image without a neighbour
    never transfers."""
    sub = neighbours[neighbours["split"] == split].set_index("Id").reindex(list(ids))
    similarity = pd.to_numeric(sub["similarity"]).fillna(-np.inf).to_numpy(dtype=float)
    return labels_to_matrix(sub["neighbour_target"].fillna("").astype(str), n_classes), similarity


def passes(similarity: np.ndarray, threshold: float | None) -> np.ndarray:
    return np.zeros(len(similarity), dtype=bool) if threshold is None else similarity >= threshold


def transfer_at(probs, neighbour_y, similarity, cut: float | None, s: TransferSettings):
    """Probabilities transferred where the similarity passes ``cut``, and which rows were."""
    mask = passes(similarity, cut)
    return apply_transfer(probs, neighbour_y, mask, s.mode, s.weight), mask


def transfer_labels(oof: pd.DataFrame, test: pd.DataFrame, neighbours: pd.DataFrame, labels: pd.DataFrame,
                    folds: pd.DataFrame, s: TransferSettings):
    """Transferred OOF and test tables, the transfer.json record and the candidate table."""
    probs, y, fold, frequency = threshold_inputs(oof, labels, folds)
    oof_ny, oof_sim = neighbour_arrays(neighbours, "oof", oof["Id"], probs.shape[1])
    score = threshold_score(y, frequency, s)
    cut, candidates = fit_similarity_threshold(probs, y, oof_ny, oof_sim, score, s.mode, s.weight)
    new_oof, oof_mask = transfer_at(probs, oof_ny, oof_sim, cut, s)
    test_ny, test_sim = neighbour_arrays(neighbours, "test", test["Id"], probs.shape[1])
    new_test, test_mask = transfer_at(prob_matrix(test, "test probabilities"), test_ny, test_sim, cut, s)
    same = same_label_set(oof_ny, y, oof_mask)
    record = {
        "similarity_threshold": cut, "mode": s.mode, "weight": s.weight, "threshold_method": s.threshold,
        "oof": {"images": len(oof), "transferred": int(oof_mask.sum()),
                "same_label_set": None if np.isnan(same) else round(same, 6),
                "macro_f1_before": round(score(probs), 6), "macro_f1_after": round(score(new_oof), 6),
                **honest_estimate(probs, y, oof_ny, oof_sim, fold, frequency, s)},
        "test": {"images": len(test), "transferred": int(test_mask.sum())},
    }
    return probability_table(oof["Id"], new_oof), probability_table(test["Id"], new_test), record, candidates


def _read(path) -> pd.DataFrame:
    """Ids, neighbours and label sets as strings ("" for none), numbers as numbers."""
    return pd.read_csv(path, dtype={"Id": str, "neighbour": str, "neighbour_target": str}, keep_default_na=False)


def run_transfer_job(*, oof_csv, test_csv, neighbours_csv, manifest_csv, folds_csv, ensemble: dict,
                     oof_out, test_out, candidates_csv, record_json) -> None:
    """The ``transfer_labels`` rule: one ensemble's OOF and test tables with neighbours' labels transferred."""
    oof, test, record, candidates = transfer_labels(
        _read(oof_csv), _read(test_csv), _read(neighbours_csv), read_manifest(manifest_csv, split="train"),
        _read(folds_csv), TransferSettings.from_ensemble(ensemble))
    oof_record = record["oof"]
    log.info("similarity threshold %s: %d OOF and %d test images transferred; OOF macro F1 %.4f -> %.4f "
             "(held out: %.4f -> %.4f)", record["similarity_threshold"], oof_record["transferred"],
             record["test"]["transferred"], oof_record["macro_f1_before"], oof_record["macro_f1_after"],
             oof_record["honest_macro_f1_before"], oof_record["honest_macro_f1_after"])
    write_csv(oof, oof_out)
    write_csv(test, test_out)
    write_csv(candidates.round(6), candidates_csv)
    write_json(record, record_json)

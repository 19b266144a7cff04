"""Matched-cell F1: the usual instance-segmentation score, with a bootstrap interval over images.

A predicted cell matches a true cell when their intersection over union (IoU) reaches the
threshold (0.5 by default), each cell matching at most one (an optimal one-to-one assignment;
above 0.5 a cell can overlap only one other that much, so the matching is then unique).
Matched pairs are true positives, unmatched predictions false positives, unmatched true cells
false negatives; precision, recall and F1 pool the counts over images.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from hpa.metrics import LEVEL, N_BOOT, _bounds, bootstrap, difference_with_interval

IOU = 0.5


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every true cell with every predicted cell: (iou (t, p), true ids, predicted ids).

    Label images (0 = background); ids need not be consecutive. One joint histogram of the
    label pairs gives every intersection at once; the margins give the areas.
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true mask {true.shape} and predicted mask {pred.shape} differ in shape")
    t_ids, t = np.unique(true, return_inverse=True)  # t: dense index per pixel, 0 = background if present
    p_ids, p = np.unique(pred, return_inverse=True)
    joint = np.bincount(t.ravel() * len(p_ids) + p.ravel(), minlength=len(t_ids) * len(p_ids))
    joint = joint.reshape(len(t_ids), len(p_ids))
    t_keep, p_keep = t_ids != 0, p_ids != 0
    inter = joint[np.ix_(t_keep, p_keep)].astype(float)
    union = joint.sum(1)[t_keep][:, None] + joint.sum(0)[p_keep][None, :] - inter
    return inter / np.maximum(union, 1), t_ids[t_keep], p_ids[p_keep]


def _assign(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the matched pairs: one-to-one, IoU >= threshold, total IoU maximal."""
    if not iou.size:
        return np.zeros(0, int), np.zeros(0, int)
    gain = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = gain[rows, cols] > 0
    return rows[keep], cols[keep]


def match_cells(true: np.ndarray, pred: np.ndarray, threshold: float = IOU) -> list[tuple[int, int, float]]:
    """Matched (true id, predicted id, IoU) pairs at IoU >= threshold."""
    iou, t_ids, p_ids = iou_matrix(true, pred)
    rows, cols = _assign(iou, threshold)
    return [(int(t_ids[r]), int(p_ids[c]), float(iou[r, c])) for r, c in zip(rows, cols)]


def cell_counts(true: np.ndarray, pred: np.ndarray, threshold: float = IOU) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one image."""
    iou, t_ids, p_ids = iou_matrix(true, pred)
    tp = len(_assign(iou, threshold)[0])
    return tp, len(p_ids) - tp, len(t_ids) - tp


def _f1(counts: np.ndarray) -> np.ndarray:
    """F1 from (..., 3) pooled tp, fp, fn; 1 where there is nothing to find and nothing found."""
    tp, fp, fn = np.moveaxis(np.asarray(counts, float), -1, 0)
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.ones_like(tp), where=denom > 0)


def matched_f1(counts) -> dict:
    """``{f1, precision, recall, n_images, n_true, n_pred}`` from per-image (tp, fp, fn) rows."""
    c = np.asarray(counts, float).reshape(-1, 3)
    tp, fp, fn = c.sum(0)
    return {"f1": float(_f1(c.sum(0))), "precision": float(tp / (tp + fp)) if tp + fp else float("nan"),
            "recall": float(tp / (tp + fn)) if tp + fn else float("nan"), "n_images": len(c),
            "n_true": int(tp + fn), "n_pred": int(tp + fp)}


def bootstrap_f1(*counts, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Pooled F1 of each segmentation's per-image counts on ``n_boot`` resamples of the images:
    shape (segmentations, n_boot); all on the same resamples (as hpa.metrics draws them), so
    rows can be subtracted (paired)."""
    arrays = [np.asarray(c, float).reshape(-1, 3) for c in counts]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"counts cover different numbers of images: {[len(a) for a in arrays]}")
    return bootstrap(lambda a, w: _f1(w @ a), arrays, len(arrays[0]), n_boot=n_boot, seed=seed)


def matched_f1_with_interval(counts, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """``matched_f1`` plus ``low, high``: its percentile bootstrap interval over images."""
    score = matched_f1(counts)
    if score["n_images"] == 0:
        return score | {"low": float("nan"), "high": float("nan")}
    low, high = _bounds(bootstrap_f1(counts, n_boot=n_boot, seed=seed)[0], level)
    return score | {"low": low, "high": high}


def paired_f1_difference(counts_a, counts_b, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """``{difference, low, high, p_not_better}``: matched F1 of a minus b on the same images."""
    a, b = bootstrap_f1(counts_a, counts_b, n_boot=n_boot, seed=seed)
    return difference_with_interval(matched_f1(counts_a)["f1"], matched_f1(counts_b)["f1"], a, b, level)

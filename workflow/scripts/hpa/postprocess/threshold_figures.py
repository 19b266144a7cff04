"""An ensemble's threshold figures: F1 against threshold per class (out-of-fold), and per-class F1 bars."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hpa.figures import per_class_size, save_figure

# Threshold curves: panels per row (the HPA 28 make four full rows).
CURVE_COLUMNS = 7


def f1_curve(scores: np.ndarray, positives: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """F1 of one class at every threshold of ``grid`` (vectorised: one sort, one search)."""
    order = np.sort(scores)
    n_pos = positives.sum()
    pos_sorted = np.sort(scores[positives.astype(bool)])
    predicted = len(order) - np.searchsorted(order, grid, side="left")
    tp = len(pos_sorted) - np.searchsorted(pos_sorted, grid, side="left")
    denom = predicted + n_pos
    return np.divide(2 * tp, denom, out=np.zeros(len(grid)), where=denom > 0)


def curve_grid(n_classes: int) -> tuple[int, int]:
    """(rows, columns) of the threshold-curve panels: up to ``CURVE_COLUMNS`` a row."""
    columns = min(n_classes, CURVE_COLUMNS)
    return math.ceil(n_classes / columns), columns


def threshold_curves(probs: np.ndarray, y: np.ndarray, thresholds, names, path) -> None:
    """Per class (``names``, one per column): OOF F1 as a function of the threshold, the chosen threshold marked."""
    if not probs.shape[1] == y.shape[1] == len(thresholds) == len(names):
        raise ValueError(f"{probs.shape[1]} probability columns, {y.shape[1]} label columns, {len(thresholds)} "
                         f"thresholds and {len(names)} class names; they must agree (rerun blend and fit_thresholds)")
    grid = np.linspace(0, 1, 201)
    rows, columns = curve_grid(len(names))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.75 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(names):  # the last row's empty panels: the panel above keeps the x axis
            ax.set_axis_off()
            above = axes[-2, k % columns]
            above.tick_params(labelbottom=True)
            above.set_xlabel("threshold")
            continue
        curve = f1_curve(probs[:, k], y[:, k], grid)
        ax.plot(grid, curve, lw=1.2)
        ax.axvline(thresholds[k], color="crimson", lw=1)
        ax.set_title(f"{k} {names[k]} (n={int(y[:, k].sum())})", fontsize=8)
        ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("threshold")
    for ax in axes[:, 0]:
        ax.set_ylabel("OOF F1")
    save_figure(fig, path)


def per_class_f1_bars(per_class: pd.DataFrame, title: str, path) -> None:
    """Honest OOF F1 per class (thresholds fitted on the other folds) with its 95% interval, the
    in-sample F1 (thresholds fitted on the same images) as a tick; classes labelled with support."""
    fig, ax = plt.subplots(figsize=(per_class_size(0, 12, max(len(per_class), 14)), 4.5))
    x = np.arange(len(per_class))
    honest, low, high = (per_class[c].to_numpy() for c in ("honest_f1", "honest_low", "honest_high"))
    labels = [f"{k} {n} ({s})" for k, n, s in zip(per_class["class"], per_class["name"], per_class["support"])]
    ax.bar(x, honest, color="steelblue", label="honest F1")
    ax.errorbar(x, honest, yerr=[honest - low, high - honest], fmt="none", color="black", lw=0.8, capsize=2,
                label="95% interval")
    ax.plot(x, per_class["f1"], "_", color="darkorange", ms=10, mew=2, label="in-sample F1")
    ax.axhline(honest.mean(), color="crimson", lw=1, label=f"honest macro F1 {honest.mean():.3f}")
    ax.axhline(per_class["f1"].mean(), color="darkorange", lw=1, ls="--",
               label=f"in-sample macro F1 {per_class['f1'].mean():.3f}")
    ax.set_xticks(x, labels, rotation=75, ha="right", fontsize=8)
    ax.set(ylabel="OOF F1", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=7, ncol=5, loc="upper right")
    save_figure(fig, path)

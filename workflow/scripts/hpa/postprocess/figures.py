"""Figures for a reader of the report: every ensemble's scores beside the no-skill line, and
which classes are predicted in place of each true class."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from hpa.figures import per_class_size, save_figure
from hpa.metrics import class_confusion
from hpa.tables import labels_to_matrix


def _interval_text(score, low, high) -> str:
    return f"{score:.3f} [{low:.3f}, {high:.3f}]"


def scores_figure(comparison: pd.DataFrame, path) -> None:
    """Per ensemble (rows of ``comparison.csv``, best honest estimate on top): the honest OOF macro
    F1 and, where test labels exist, the test macro F1, each with its 95% interval and written
    out, beside the no-skill lines of the OOF and the test images."""
    rows = comparison.reset_index(drop=True)
    has_test = "test_macro_f1" in rows and rows["test_macro_f1"].notna().any()
    fig, ax = plt.subplots(figsize=(7, 2.2 + 0.9 * len(rows)))
    series = [("honest_macro_f1", "honest_low", "honest_high", "honest (out-of-fold)", "tab:blue", 0.15)]
    if has_test:
        series.append(("test_macro_f1", "test_low", "test_high", "test (held-back labels)", "tab:orange", -0.15))
    y = -np.arange(len(rows), dtype=float)
    for score, low, high, label, colour, shift in series:
        ax.errorbar(rows[score], y + shift, xerr=[rows[score] - rows[low], rows[high] - rows[score]],
                    fmt="o", color=colour, capsize=4, label=f"{label}, 95% interval")
        for yi, (s, lo, hi) in zip(y + shift, rows[[score, low, high]].to_numpy()):
            ax.annotate(_interval_text(s, lo, hi), (hi, yi), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=10, color=colour)
    ax.axvline(rows["oof_no_skill"].iloc[0], color="grey", ls="--",
               label=f"no-skill, out-of-fold images ({rows['oof_no_skill'].iloc[0]:.3f})")
    if has_test:
        ax.axvline(rows["test_no_skill"].iloc[0], color="grey", ls=":",
                   label=f"no-skill, test images ({rows['test_no_skill'].iloc[0]:.3f})")
    top = max(rows["honest_high"].max(), rows["test_high"].max() if has_test else 0)
    ax.set(xlim=(0, min(1.0, top + 0.3)), ylim=(y[-1] - 0.6, 0.6))
    ax.set_xlabel("macro F1 (the competition's metric)", fontsize=11)
    ax.set_title("Macro F1 of every ensemble\nright of the no-skill line: evidence of learning", fontsize=12)
    ax.set_yticks(y, rows["ensemble"], fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=9, ncol=2, frameon=False)
    save_figure(fig, path)


def _confusion_panel(ax, y, pred, names, title) -> None:
    shares, n = class_confusion(y, pred)
    ax.imshow(100 * shares, cmap="Blues", vmin=0, vmax=100, aspect="auto")
    for i, j in zip(*np.nonzero(shares >= 0.05)):
        ax.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=6,
                color="white" if shares[i, j] > 0.5 else "black")
    k = len(names)
    ax.plot([-0.5, k - 0.5], [-0.5, k - 0.5], color="crimson", lw=0.5)  # the diagonal: recall
    ax.set_xticks(range(k + 1), [f"{c} {name}" for c, name in enumerate(names)] + ["no class"],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(k), [f"{c} {name} ({count})" for c, (name, count) in enumerate(zip(names, n))],
                  fontsize=7)
    ax.set(xlabel="predicted class", ylabel="true class (images)", title=title)


def confusion_figure(tables: dict[str, pd.DataFrame], names, path) -> None:
    """One panel per prediction table (``Target``, ``Predicted``): for each true class (row, ``names``), the
    percentage of its images on which each class is predicted although they do not hold it;
    the diagonal is the class's recall, the last column images given no class at all."""
    n = len(names)
    size = (per_class_size(3, 7.5, n) * len(tables), per_class_size(2.5, 7.5, n))
    fig, axes = plt.subplots(1, len(tables), figsize=size, squeeze=False, layout="constrained")
    for ax, (title, table) in zip(axes[0], tables.items()):
        y, pred = labels_to_matrix(table["Target"], n), labels_to_matrix(table["Predicted"], n)
        _confusion_panel(ax, y, pred, names, title)
    save_figure(fig, path)

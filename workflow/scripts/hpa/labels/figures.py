"""Figures of the label analysis (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm

from hpa.figures import per_class_size, save_figure
from hpa.labels.cooccurrence import conditional_probability


def cooccurrence_heatmap(counts: np.ndarray, groups: dict, names, path) -> None:
    """P(column class | row class), classes (``names``) ordered by group, group borders drawn, percentages written."""
    if len(counts) != len(names):
        raise ValueError(f"co-occurrence counts of {len(counts)} classes, {len(names)} class names; rerun count_labels")
    order = [k for group in groups["groups"] for k in group["classes"]]
    cond = conditional_probability(counts)[np.ix_(order, order)]
    size = np.diag(counts)[order]
    shown = np.ma.masked_where(np.eye(len(order), dtype=bool) | np.isnan(cond), cond)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")

    n = len(names)
    fig, ax = plt.subplots(figsize=(per_class_size(4, 11, n), per_class_size(4, 9, n)))
    # A square-root scale: most P(j | i) are a few percent, which a linear scale shows as one colour.
    image = ax.imshow(shown, cmap=cmap, norm=PowerNorm(0.5, vmin=0, vmax=1))
    for r in range(len(order)):
        for c in range(len(order)):
            if r != c and not np.isnan(cond[r, c]) and cond[r, c] >= 0.01:
                ax.text(c, r, f"{100 * cond[r, c]:.0f}", ha="center", va="center", fontsize=7,
                        color="black" if cond[r, c] > 0.35 else "white")
    ticks = [f"{k} {names[k]}" for k in order]
    ax.set_xticks(range(len(order)), ticks, rotation=90, fontsize=9)
    ax.set_yticks(range(len(order)), [f"{tick} (n={count:,})" for tick, count in zip(ticks, size)], fontsize=9)
    edges = np.cumsum([len(group["classes"]) for group in groups["groups"]])[:-1] - 0.5
    for edge in edges:
        ax.axhline(edge, color="white", linewidth=2)
        ax.axvline(edge, color="white", linewidth=2)
    ax.set_xlabel("class j")
    ax.set_ylabel("class i (images holding it)")
    ax.set_title(f"P(j | i) in % of the images holding class i; {len(groups['groups'])} class groups "
                 f"({groups['method']}) bordered in white")
    fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02, label="P(j | i)")
    save_figure(fig, path, dpi=110)


def class_frequency_chart(class_counts: pd.DataFrame, path) -> None:
    """Images per class and source (the columns of ``class_counts`` between name and all), log scale."""
    sources = [c for c in class_counts.columns if c not in ("class", "name", "all")]
    table = class_counts.sort_values(["all", "class"], ascending=[False, True]).reset_index(drop=True)
    height = 0.8 / len(sources)
    fig, ax = plt.subplots(figsize=(11, per_class_size(2, 8, len(table))))
    for i, source in enumerate(sources):
        y = np.arange(len(table)) - 0.4 + height * (i + 0.5)
        values = table[source].to_numpy()
        ax.barh(y[values > 0], values[values > 0], height=height, label=f"{source} ({values.sum():,} labels)")
        for yy, value in zip(y, values):
            ax.text(max(value, 1) * 1.05, yy, f"{value:,}", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_yticks(range(len(table)), [f"{k} {name}" for k, name in zip(table["class"], table["name"])])
    ax.invert_yaxis()
    ax.set_xlabel("images holding the class (log scale)")
    ax.set_title("Images per class and label source")
    ax.set_xlim(0.8, table[sources].to_numpy().max() * 3)
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path, dpi=110)

"""The per-cell evaluation as one figure: what each measure scored, beside the baseline it must beat."""

from __future__ import annotations

import numpy as np

from hpa.figures import plt, save_figure


def _bar(ax, y, value, low, high, colour, label=None):
    ax.barh(y, value, color=colour, height=0.38, label=label)
    if low is not None and high is not None:
        ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="black", capsize=3, lw=1)


def plot_evaluation(cells: dict, segmentation: dict | None, classes, path, title: str = "") -> None:
    """Left: segmentation F1 (vs a disk per nucleus) and per-cell mAP of each method beside its baselines (grey);
    right: the pointing game's hit rate per class (vs a random point of the cells); 95% intervals."""
    game = cells["pointing"]
    tested = sorted(game["classes"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, max(3.5, 0.28 * (len(tested) + 2))),
                                      gridspec_kw={"width_ratios": [1, 1.3], "wspace": 0.9})
    rows = []  # (label, value, low, high, is a baseline)
    if segmentation:
        s, b = segmentation["masks"], segmentation["disk_baseline"]
        rows += [("segmentation F1 (IoU 0.5)", s["f1"], s["low"], s["high"], False),
                 ("  baseline: a disk per nucleus", b["f1"], b["low"], b["high"], True)]
    names = {"image": "  baseline: image's probability", "centre": "  baseline: a fixed centre map",
             "map": "cell mAP, map", "blend": "cell mAP, blend", "masked": "cell mAP, cell alone",
             "gated": "cell mAP, gated (default)"}
    for method in ("image", "centre", "map", "blend", "masked", "gated"):
        if method in cells["cell_map"]:
            s = cells["cell_map"][method]
            rows.append((names[method], s["map"], s["low"], s["high"], method in ("image", "centre")))
    for k, (_name, v, lo, hi, baseline) in enumerate(rows):
        _bar(left, k, v, lo, hi, "lightgrey" if baseline else "tab:blue")
        left.text(min(hi if hi is not None else v, 0.8) + 0.02, k, f"{v:.3f} [{lo:.3f}, {hi:.3f}]", va="center", fontsize=7)
    left.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    left.set_xlim(0, 1)
    left.invert_yaxis()
    left.set_title(f"{title}: cells ({cells['n_images']} test images)")
    labels = ["all classes"] + [classes[c] for c in tested]
    stats = [game["all"]] + [game["classes"][c] for c in tested]
    y = np.arange(len(stats))
    for k, g in enumerate(stats):
        if not g.get("n"):
            continue
        _bar(right, k + 0.2, g["hit"], g["hit_low"], g["hit_high"], "tab:orange",
             "located map's peak in the class's region" if k == 0 else None)
        _bar(right, k - 0.2, g["chance"], None, None, "lightgrey", "random point of the cells" if k == 0 else None)
    right.set_yticks(y, [f"{name} (n={g.get('n', 0)})" for name, g in zip(labels, stats)], fontsize=8)
    right.set_xlim(0, 1)
    right.invert_yaxis()
    right.legend(loc="lower right", fontsize=8)
    right.set_title("pointing game")
    save_figure(fig, path)

"""Saving a matplotlib figure as a PNG: atomically, and without a display (cluster nodes and CI have none)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot
import matplotlib.pyplot as plt  # noqa: E402

from hpa.files import atomic_path  # noqa: E402


def save_figure(fig, path, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` as a PNG cropped to its content, and free it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def per_class_size(base: float, span: float, n_classes: int) -> float:
    """A figure side (inches) of ``base`` plus ``span`` per 28 classes: the class figures were laid out
    for the HPA 28 and keep exactly that size there; fewer or more classes shrink or grow them."""
    return base + span * n_classes / 28

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

"""Combining members' class maps, and labelling cells by thresholds: what ``cell_labels`` (the test
set) and ``new_image_panels`` (a folder of new images) share, so the two cannot label differently.

An ensemble's map of an image is the mean of its members' maps, each first divided by its own peak
per image and class: a member's map is in its own units (CAM logits, Grad-CAM), and per-cell scores
only use a map's shape within an image (``hpa.cells.scores``), so each member gets an equal say in
where, as the blend gives them in what. Members with different feature grids are brought to the
finest one first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa.cells.frames import bilinear_matrix
from hpa.cells.scores import score_table
from hpa.classes import join_names


def peak_normalised(maps: np.ndarray) -> np.ndarray:
    """(n, classes, h, w) maps, each (image, class) plane divided by its own peak (negative values: 0)."""
    maps = np.clip(maps.astype(np.float32), 0, None)
    peak = maps.max(axis=(2, 3), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def to_grid(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(n, classes, h, w) maps brought to ``grid`` by bilinear interpolation (as ``hpa.cells.frames.upsample``)."""
    if maps.shape[2:] == tuple(grid):
        return maps
    rows, cols = bilinear_matrix(grid[0], maps.shape[2]), bilinear_matrix(grid[1], maps.shape[3])
    return np.einsum("ah,nkhw,bw->nkab", rows, maps, cols, optimize=True).astype(np.float32)


def average_maps(members) -> np.ndarray:
    """(n, classes, h, w) float32: the members' (n, classes, h, w) maps, each peak-normalised, averaged on the
    finest member's grid (module docstring)."""
    members = list(members)
    if not members:
        raise ValueError("no member maps to combine")
    grid = max((m.shape[2:] for m in members), key=lambda g: g[0] * g[1])
    total = np.zeros((*members[0].shape[:2], *grid), np.float32)
    for maps in members:
        total += to_grid(peak_normalised(maps), grid)
    return total / len(members)


def labelled_table(image_id: str, cells, thresholds: np.ndarray, classes) -> tuple[pd.DataFrame, np.ndarray]:
    """(``score_table`` of one image's cells with a ``labels`` column, (cells, classes) bool): a cell
    takes the classes whose score reaches the image's threshold."""
    shown = cells.scores >= np.asarray(thresholds)[None, :]
    table = score_table(image_id, cells)
    table["labels"] = [join_names(np.flatnonzero(s), classes) for s in shown]
    return table, shown


def empty_table(n_classes: int) -> pd.DataFrame:
    """The cells table with no rows (a batch where no image could be scored)."""
    return pd.DataFrame(columns=["Id", "cell", "x0", "y0", "x1", "y1", "area",
                                 *[f"p{k}" for k in range(n_classes)], "labels"])

"""The ``cell_labels`` rule: an ensemble's class maps, and every test cell's score per class.

The ensemble's map of an image is the mean of its members' (every fold of every model), each
first divided by its own peak (``hpa.cells.maps.average_maps``).

Per-cell scores follow ``cells.method`` (``hpa.cells.scores``). A cell is labelled with the
classes whose score reaches the ensemble's threshold for the image (the thresholds the
submission applied), so a cell of a positive image whose map lies elsewhere drops out. The
submission's confidences are the scores discounted for partial cells (``cells.partial_cells``,
``hpa.cells.scores.whole_shares``: the ``whole`` column of ``cell_scores.csv``).
What the model says of each cell alone (``hpa.inference.per_cell``) is averaged over the members
the same way, unnormalised (probabilities share one scale). Outputs: ``cell_scores.csv`` (Id,
cell, box, area, p0.., labels by name), the 2021 competition's submission
(``hpa.cells.encoding``), the ensemble's ``class_maps.npz`` and ``cells_alone.npz``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hpa.cells.encoding import COLUMNS, submission_row
from hpa.cells.frames import SQUARE
from hpa.cells.maps import average_maps, empty_table, labelled_table
from hpa.cells.masks import load_masks
from hpa.cells.scores import aligned, cell_scores, cells_of, confidences, whole_shares
from hpa.files import atomic_path
from hpa.tables import prob_matrix

if TYPE_CHECKING:
    from hpa.cells.cell_model import CellModel

log = logging.getLogger(__name__)


def ensemble_maps(paths) -> tuple[np.ndarray, np.ndarray]:
    """(ids, maps (n, classes, h, w) float16): the members' peak-normalised maps averaged (module docstring)."""
    members = []
    for path in paths:
        with np.load(path) as saved:
            members.append((saved["ids"].astype(str), saved["maps"]))
    if not members:
        raise ValueError("no member maps to combine")
    ids = members[0][0]
    for path, (member_ids, _) in zip(paths, members):
        if not np.array_equal(member_ids, ids):
            raise ValueError(f"{path}: maps of other test images than {paths[0]}'s; rerun its predict job")
    return ids, average_maps(m for _, m in members).astype(np.float16)


def write_cells(ids, cells, probs, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=np.asarray(ids, str), cells=cells, probs=probs)


def write_maps(ids, maps, classes, path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, ids=np.asarray(ids, str), maps=maps, classes=np.asarray(classes, str))


def label_cells(*, images: pd.DataFrame, masks_dir, probs: pd.DataFrame, map_ids, maps, fits: dict,
                thresholds: np.ndarray, classes, method: str, weight: float, min_score: float,
                partial: str = "discount", alone: dict | None = None, cell_model: CellModel | None = None):
    """(cell_scores table, 2021 submission): every image of ``images`` (segment_cells' rows), in order.
    ``partial``: ``cells.partial_cells``; ``cell_model``: the fitted cell-level model, which ``gated``
    blends in (``hpa.cells.cell_model``)."""
    prob_of = dict(zip(probs["Id"], prob_matrix(probs, "test probabilities")))
    map_row = {i: k for k, i in enumerate(map_ids)}
    tables, rows, n_unmapped = [], [], 0
    for image in images.itertuples(index=False):
        if image.problem or image.Id not in prob_of:  # no mask, or the image could not be cached
            rows.append({"ID": image.Id, "ImageWidth": image.width, "ImageHeight": image.height, "PredictionString": ""})
            continue
        mask = load_masks(masks_dir, image.Id)
        grid = maps[map_row[image.Id]] if image.Id in map_row else None
        how = method if grid is not None or method in ("image", "masked", "gated") else "image"
        n_unmapped += how != method
        mine = crops = None
        cell_ids = cells_of(mask)[0]
        if method in ("masked", "gated"):
            mine = aligned(alone or {}, image.Id, cell_ids, len(classes))
        if method == "gated" and cell_model is not None:
            crops = cell_model.evidence(image.Id, cell_ids)
        cells = cell_scores(prob_of[image.Id], mask, grid, how, weight, fit=fits.get(image.Id, SQUARE), alone=mine,
                            thresholds=thresholds, cell_model=crops)
        whole = whole_shares(mask, cells.ids, cells.areas)
        tables.append(labelled_table(image.Id, cells, thresholds, classes)[0].assign(whole=whole.round(4)))
        rows.append(submission_row(image.Id, mask, cells.ids, confidences(cells.scores, whole, partial), min_score))
    if n_unmapped:
        log.warning("%d images had no class maps: their cells took their image's probabilities", n_unmapped)
    scores = pd.concat(tables, ignore_index=True) if tables else empty_table(len(classes)).assign(whole=[])
    return scores, pd.DataFrame(rows, columns=COLUMNS)

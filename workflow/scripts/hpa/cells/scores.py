"""Per-cell class scores from an image's probabilities, its class maps (optional) and a cell mask.

Methods (``cell_scores(..., method=)``):

- ``image``: every cell gets its image's probabilities (the no-map baseline);
- ``map``: probability x the cell's map ratio ``r = mean map in the cell / max over the
  image's cells of that mean``. The map's scale is arbitrary (CAM logits, Grad-CAM units)
  and differs between images and classes, so it only ranks cells within an image; the image
  probability keeps scores comparable across images. The best cell gets the image's
  probability, as in multiple-instance learning, where an image is positive when at least
  one of its cells is. A mean (not a sum) so that large cells are not favoured for their size;
  negative map values count as no evidence (clipped at 0); a class whose map is zero over
  every cell, or that has no map, keeps the image's probability in every cell (r = 1);
- ``blend``: probability x (w + (1 - w) r), w = ``weight`` (0.5): half the image's say, half
  the map's, so that a cell the map misses keeps some of its image's score (maps of weak
  classes are often wrong where the image label is right);
- ``masked``: probability x ``a / max a``, where ``a`` is what the model says of each cell
  alone in its field (every other pixel set to zero: ``hpa.inference.per_cell``), the best cell
  again taking the image's probability. A cell that was not shown alone keeps its image's.
- ``gated`` (the default): probability x ``min(1, a / min(t, max a))``, ``t`` the class's
  threshold for the image (the one the submission applies, fitted on the training folds'
  out-of-fold images: no cell truth). A cell that the models call positive on its own (``a``
  reaches ``t``) keeps its image's full probability, so where every cell shows the image's
  labels (most of the atlas) the cells score as the image does; a cell below it is scaled by
  how far below it lies, as ``masked`` scales it, with the best cell again taking the image's
  probability where none reaches ``t``. ``masked`` instead scales every cell but the best
  one, which costs ranks where the cells all agree (issue 28: 0.342 vs 0.404). With a cell-level
  model (``cells.model``), a cell's score is this one and the cell model's probability blended, each
  weighted by its out-of-fold skill at the image labels (``hpa.cells.cell_model``).

**Partial cells** (``cells.partial_cells``). A submission's confidence is ``score x whole``
(``whole_shares``): what share of a whole cell the found cell is, its area over the median area of
its field's cells that the border does not cut, at most 1. A 2021-style truth is another
segmentation of the same field, and a found cell is only scored if it matches a true cell at IoU 0.6;
a sliver cut by the border (or a fragment) rarely does, since a few pixels of disagreement are a
large share of it, and where it does not match it is a false positive for every class it is given.
So its confidence is discounted by how partial it is: no parameter, nothing fitted, and nothing
learned, which the evaluation shows by scoring the same discount on the image's probabilities.
A whole cell keeps its score; the class scores themselves (``cell_scores.csv``, the labels) are not
discounted. With the user's own masks (``cells.masks``) the cells are taken as given (``keep``).

Maps at a coarser grid than the mask (a CNN's feature grid) are upsampled bilinearly to the
mask (half-pixel centres, as torch's ``interpolate(..., align_corners=False)``), rather than
the mask downsampled to the grid: a cell smaller than a grid cell would then vanish or share
one value with its neighbours. The upsampled maps are never built: a cell's mean of the
upsampled map is linear in the grid values, so each cell's pooling weights over the grid are
computed once per mask (two bincounts over its pixels) and serve every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from hpa.cells.frames import SQUARE, bilinear_matrix, model_frame
from hpa.cells.masks import border_ids

METHODS = ("image", "map", "blend", "masked", "gated")
PARTIAL = ("discount", "keep")
BLEND_WEIGHT = 0.5


@dataclass
class CellScores:
    """One image's cells: ``ids`` (n,), ``boxes`` (n, 4) as x0, y0, x1, y1 (x1, y1 exclusive),
    ``areas`` (n,) in px, ``scores`` (n, n_classes)."""

    ids: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    scores: np.ndarray


def cells_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, boxes, areas) of the cells of a label image (0 = background; ids need not be consecutive)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer) or (mask.size and mask.min() < 0):
        raise ValueError(f"a cell mask is one plane of non-negative integer labels, got {mask.dtype} {mask.shape}")
    counts = np.bincount(mask.ravel(), minlength=1)
    ids = np.flatnonzero(counts[1:]) + 1
    slices = ndi.find_objects(mask)
    boxes = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in (slices[i - 1] for i in ids)],
                     dtype=np.int64).reshape(-1, 4)
    return ids, boxes, counts[ids]


def whole_shares(mask: np.ndarray, ids: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(n cells,): each cell's area over the median area of the field's cells that its border does not cut
    (of all its cells where the border cuts every one), at most 1 (``partial cells``, module docstring)."""
    areas = np.asarray(areas, float)
    if not len(areas):
        return areas
    whole = areas[~np.isin(ids, border_ids(mask))]
    return np.minimum(1.0, areas / np.median(whole if len(whole) else areas))


def confidences(scores: np.ndarray, whole: np.ndarray, partial: str) -> np.ndarray:
    """(n cells, n_classes): the confidences a submission gives its cells' ``scores``: discounted by their
    ``whole`` shares (``whole_shares``) where ``partial`` is ``discount``, as scored where it is ``keep``."""
    if partial not in PARTIAL:
        raise ValueError(f"unknown cells.partial_cells {partial!r}; choose from {PARTIAL}")
    return scores * np.asarray(whole)[:, None] if partial == "discount" else scores


def dense_ids(mask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The mask with cell ``ids[k]`` as k + 1 and everything else 0."""
    lut = np.zeros(int(mask.max(initial=0)) + 1, np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[mask]


def pooling_weights(dense: np.ndarray, n_cells: int, grid: tuple[int, int]) -> np.ndarray:
    """(n_cells, h, w) for a dense mask (cells 1..n_cells): cell k's mean of any (h, w) map
    upsampled to the mask is ``(weights[k - 1] * map).sum()``. That mean is
    ``ry.T @ indicator_k @ rx / area_k`` with the bilinear matrices ``ry``, ``rx``: the
    indicator times ``rx`` comes from two bincounts (each pixel blends at most two grid
    columns), then one product with ``ry`` over the rows."""
    height, width = dense.shape
    h, w = grid
    src = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)  # as bilinear_matrix
    j0 = np.floor(src).astype(int)
    j1, t = np.minimum(j0 + 1, w - 1), src - j0
    start = (dense * height + np.arange(height)[:, None]) * w  # row (cell, y) of each pixel
    size = (n_cells + 1) * height * w
    by_row = (np.bincount((start + j0).ravel(), np.broadcast_to(1 - t, dense.shape).ravel(), size)
              + np.bincount((start + j1).ravel(), np.broadcast_to(t, dense.shape).ravel(), size))
    by_row = by_row.reshape(n_cells + 1, height, w)[1:]  # (cell, y, j)
    areas = np.bincount(dense.ravel(), minlength=n_cells + 1)[1:]
    # One matrix product over the rows y: (h, height) @ (height, cells * w).
    pooled = bilinear_matrix(height, h).T @ by_row.transpose(1, 0, 2).reshape(height, -1)
    return pooled.reshape(h, n_cells, w).transpose(1, 0, 2) / np.maximum(areas, 1)[:, None, None]


def cell_means(mask: np.ndarray, ids: np.ndarray, maps: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """class -> (n cells,) mean of its map (upsampled to the mask) over each cell."""
    out, weights = {}, {}
    dense = dense_ids(mask, ids)
    areas = np.maximum(np.bincount(dense.ravel(), minlength=len(ids) + 1)[1:], 1)
    for c, grid in maps.items():
        grid = np.asarray(grid, float)
        if grid.ndim != 2:
            raise ValueError(f"class {c}: a class map is one 2-D plane, got shape {grid.shape}")
        if grid.shape == mask.shape:  # at the mask's size: a plain per-cell mean
            out[c] = np.bincount(dense.ravel(), grid.ravel(), len(ids) + 1)[1:] / areas
            continue
        if grid.shape not in weights:
            weights[grid.shape] = pooling_weights(dense, len(ids), grid.shape)
        out[c] = np.einsum("kij,ij->k", weights[grid.shape], grid)
    return out


def _as_dict(maps, n_classes: int) -> dict[int, np.ndarray]:
    if maps is None:
        return {}
    if isinstance(maps, dict):
        bad = [c for c in maps if not 0 <= int(c) < n_classes]
        if bad:
            raise ValueError(f"maps for classes {bad} outside 0..{n_classes - 1}")
        return {int(c): m for c, m in maps.items()}
    maps = np.asarray(maps)
    if maps.ndim != 3 or len(maps) != n_classes:
        raise ValueError(f"maps must be (n_classes={n_classes}, h, w) or a dict class -> (h, w), got {maps.shape}")
    return dict(enumerate(maps))


def map_ratios(mask: np.ndarray, ids: np.ndarray, maps, n_classes: int) -> np.ndarray:
    """(n cells, n_classes): each cell's mean map over the best cell's (1 where a class has no map
    or its map is zero over every cell); see the module docstring."""
    ratios = np.ones((len(ids), n_classes))
    for c, means in cell_means(mask, ids, _as_dict(maps, n_classes)).items():
        means = np.clip(means, 0, None)
        if len(means) and means.max() > 0:
            ratios[:, c] = means / means.max()
    return ratios


def alone_ratios(alone: np.ndarray) -> np.ndarray:
    """(n cells, n_classes): each cell's probability alone over the image's best cell's (1 where a cell
    was not shown alone, NaN, or where no cell scores above zero)."""
    alone = np.asarray(alone, float)
    ratios = np.ones_like(alone)
    if alone.size == 0 or np.isnan(alone).all():
        return ratios
    peak = np.nanmax(alone, axis=0, keepdims=True)
    np.divide(alone, peak, out=ratios, where=(peak > 0) & ~np.isnan(alone))
    return ratios


def gated_ratios(alone: np.ndarray, thresholds) -> np.ndarray:
    """(n cells, n_classes): ``min(1, a / min(t, max a))`` per class (``gated``, module docstring);
    1 where a cell was not shown alone or no cell scores above zero."""
    alone = np.asarray(alone, float)
    ratios = np.ones_like(alone)
    if alone.size == 0 or np.isnan(alone).all():
        return ratios
    gate = np.minimum(np.asarray(thresholds, float)[None, :], np.nanmax(alone, axis=0, keepdims=True))
    np.divide(alone, gate, out=ratios, where=(gate > 0) & ~np.isnan(alone))
    return np.minimum(ratios, 1.0)


def gated_scores(probs: np.ndarray, alone: np.ndarray, thresholds, cell_model: tuple | None = None) -> np.ndarray:
    """(n cells, n_classes): method ``gated``'s scores of one image. With a cell-level model's ``(q (n cells,
    n_classes), w (n_classes,))``: ``(1 - w) gated + w q`` (``hpa.cells.cell_model``; a cell it did not score,
    NaN, keeps the gated score)."""
    scores = probs[None, :] * gated_ratios(alone, thresholds)
    if cell_model is None:
        return scores
    q, weight = (np.asarray(v, float) for v in cell_model)
    return np.where(np.isnan(q), scores, (1 - weight) * scores + weight * q)


def ensemble_cells(paths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, cell ids, probs (rows, classes) float32): each cell alone, the mean over the members."""
    members = []
    for path in paths:
        with np.load(path) as saved:
            members.append((saved["ids"].astype(str), saved["cells"], saved["probs"].astype(np.float32)))
    if not members:
        raise ValueError("no member cell probabilities to combine")
    ids, cells, _ = members[0]
    for path, (other_ids, other_cells, _) in zip(paths, members):
        if not (np.array_equal(other_ids, ids) and np.array_equal(other_cells, cells)):
            raise ValueError(f"{path}: other cells than {paths[0]}'s (the masks changed since); rerun its predict job")
    return ids, cells, np.mean([p for _, _, p in members], axis=0)


def alone_lookup(ids, cells, probs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Image Id -> (its cell ids, their probabilities alone)."""
    order = np.argsort(ids, kind="stable")
    ids, cells, probs = ids[order], cells[order], probs[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(ids)]
    return {ids[a]: (cells[a:b], probs[a:b]) for a, b in zip(starts, ends)}


def aligned(lookup: dict, image_id: str, cell_ids: np.ndarray, n_classes: int) -> np.ndarray:
    """The probabilities alone of ``cell_ids`` (NaN for a cell that was not shown alone)."""
    out = np.full((len(cell_ids), n_classes), np.nan)
    if image_id in lookup:
        cells, probs = lookup[image_id]
        where = {int(c): k for k, c in enumerate(cells)}
        for row, cell in enumerate(cell_ids):
            if int(cell) in where:
                out[row] = probs[where[int(cell)]]
    return out


def cell_scores(probs, mask, maps=None, method: str = "image", weight: float = BLEND_WEIGHT, *,
                fit: str = SQUARE, alone=None, thresholds=None, cell_model: tuple | None = None) -> CellScores:
    """Per-cell scores of one image; ``probs`` (n_classes,), ``mask`` (H, W) int labels,
    ``maps`` (n_classes, h, w) or {class: (h, w)} at any grid (needed by ``map`` and ``blend``),
    covering the square the model saw of the field (``fit``: the cache's, ``hpa.cells.frames``).
    A cell a crop cut away entirely has no map: it keeps its image's probabilities. ``alone`` (n cells,
    n_classes), in the order of the mask's cell ids, what the model says of each cell alone (``masked``,
    ``gated``); ``thresholds`` (n_classes,) the image's class thresholds (``gated``); ``cell_model`` the
    cell-level model's (scores (n cells, n_classes), weights (n_classes,)) that ``gated`` blends in."""
    if method not in METHODS:
        raise ValueError(f"unknown per-cell method {method!r}; choose from {METHODS}")
    probs = np.asarray(probs, float)
    if probs.ndim != 1:
        raise ValueError(f"probs must be one image's (n_classes,) probabilities, got shape {probs.shape}")
    mask = np.asarray(mask)
    ids, boxes, areas = cells_of(mask)
    if method == "image":
        return CellScores(ids, boxes, areas, np.tile(probs, (len(ids), 1)))
    if method in ("masked", "gated"):
        if alone is None or np.shape(alone) != (len(ids), len(probs)):
            raise ValueError(f"method {method!r} needs each cell's probabilities alone, ({len(ids)} cells, "
                             f"{len(probs)} classes); got {None if alone is None else np.shape(alone)}")
        if method == "masked":
            return CellScores(ids, boxes, areas, probs[None, :] * alone_ratios(alone))
        if thresholds is None or np.shape(thresholds) != probs.shape:
            raise ValueError(f"method 'gated' needs the image's {len(probs)} class thresholds; got "
                             f"{None if thresholds is None else np.shape(thresholds)}")
        return CellScores(ids, boxes, areas, gated_scores(probs, alone, thresholds, cell_model))
    if maps is None:
        raise ValueError(f"method {method!r} needs class maps; use method='image' without them")
    frame = model_frame(mask, fit)
    ratios = map_ratios(frame, ids, maps, len(probs))
    if frame is not mask:
        ratios[~np.isin(ids, frame)] = 1.0
    share = ratios if method == "map" else weight + (1 - weight) * ratios
    return CellScores(ids, boxes, areas, probs[None, :] * share)


def score_table(image_id: str, cells: CellScores) -> pd.DataFrame:
    """``Id, cell, x0, y0, x1, y1, area, p0..p{n-1}`` (scores rounded as probability tables are)."""
    n_classes = cells.scores.shape[1]
    table = pd.DataFrame({"Id": image_id, "cell": cells.ids, **dict(zip(("x0", "y0", "x1", "y1"), cells.boxes.T)),
                          "area": cells.areas})
    scores = pd.DataFrame(cells.scores.round(6), columns=[f"p{k}" for k in range(n_classes)])
    return pd.concat([table, scores], axis=1)

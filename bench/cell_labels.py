"""Per-cell labels on demo fields without a model: how much a class map could win, and at what grid.

100 test-like fields at 128 px (label sets as the demo draws them; seeds not used elsewhere),
cells from the embedded segmentation (and, to separate its losses, the true cells).
Probabilities are the TRUE image labels (1 for each of the field's classes, 0 otherwise), so:

- ``image``: every cell gets its image's labels, the best the no-map baseline can do; what it
  loses is the per-cell variation of the demo (cells that do not express a label of their
  image are false positives at the top confidence);
- ``map`` with an ORACLE map: each class's true drawn region, blurred (sigma 2 px), at the
  field's size or averaged down to a CNN's feature grid (stride 32: 2x2 for the demo's 64 px
  training images, 4x4 at 128 px; stride 16: 8x8 at 128 px): the ceiling class maps could reach;
- ``blend`` with the 4x4 oracle.

Figures: per-cell mAP (the 2021 way, IoU 0.6) with bootstrap intervals, paired differences
against ``image``, the pointing game of the coarse oracles against a random point in the cell
area, and the cost per image of scoring, encoding the 2021 submission row and judging.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi

from hpa.cells.encoding import submission_row
from hpa.cells.label_metrics import (
    cell_map_with_interval,
    judge_cells,
    paired_cell_map_difference,
    point_hits,
    pointing_game,
)
from hpa.cells.scores import cell_scores
from hpa.cells.segment import segment
from hpa.classes import CHANNELS, NUM_CLASSES
from hpa.demo.dataset import sample_label_sets
from hpa.demo.render import render_field

from .common import report

BLUE, BODY = CHANNELS.index("blue"), [CHANNELS.index("red"), CHANNELS.index("yellow")]
GRIDS = {"full": None, "grid8": 8, "grid4": 4, "grid2": 2}  # name -> cells per side of the oracle


def oracle_maps(regions: dict, labels, grid: int | None, sigma: float = 2.0) -> dict:
    """Each true class's drawn region, blurred, at full size or block-averaged to grid x grid."""
    maps = {}
    for c in labels:
        if c not in regions or not regions[c].any():
            continue
        blurred = ndi.gaussian_filter(regions[c].astype(float), sigma)
        if grid is not None:
            size = blurred.shape[0] // grid
            blurred = blurred[:size * grid, :size * grid].reshape(grid, size, grid, size).mean((1, 3))
        maps[c] = blurred
    return maps


def _round(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items() if k not in ("ap", "n_true")}


def main(n: int = 100, size: int = 128, seed: int = 2201) -> dict:
    rng = np.random.default_rng(seed)
    fields = [(set(s), int(rng.integers(0, 2**62))) for s in sample_label_sets(n, rng)]
    judged = {name: [] for name in ["image", *(f"map_{g}" for g in GRIDS), "blend_grid4", "image_true_cells",
                                    "map_full_true_cells"]}
    points = {g: [] for g in GRIDS if g != "full"}
    cost = {"segment": 0.0, "score_image": 0.0, "score_map_grid4": 0.0, "encode": 0.0, "judge": 0.0}
    for labels, s in fields:
        image, truth = render_field(labels, size, np.random.default_rng(s), truth=True)
        probs = np.zeros(NUM_CLASSES)
        probs[sorted(labels)] = 1.0
        t0 = time.perf_counter()
        cells = segment(image[BLUE], image[BODY]).cells
        cost["segment"] += time.perf_counter() - t0
        maps = {g: oracle_maps(truth.regions, labels, grid) for g, grid in GRIDS.items()}

        def judge(name, scored, pred=cells, truth=truth):  # bound now, though called within this iteration
            t = time.perf_counter()
            judged[name].append(judge_cells(truth.cells, truth.labels, pred, scored.ids, scored.scores))
            cost["judge"] += (time.perf_counter() - t) / len(judged)  # per scoring judged

        t0 = time.perf_counter()
        base = cell_scores(probs, cells)
        t1 = time.perf_counter()
        coarse = cell_scores(probs, cells, maps["grid4"], method="map")
        t2 = time.perf_counter()
        submission_row("field", cells, coarse.ids, coarse.scores, min_score=0.01)
        cost["encode"] += time.perf_counter() - t2
        cost["score_image"] += t1 - t0
        cost["score_map_grid4"] += t2 - t1
        judge("image", base)
        for g in GRIDS:
            judge(f"map_{g}", coarse if g == "grid4" else cell_scores(probs, cells, maps[g], method="map"))
        judge("blend_grid4", cell_scores(probs, cells, maps["grid4"], method="blend"))
        judge("image_true_cells", cell_scores(probs, truth.cells), truth.cells)
        judge("map_full_true_cells", cell_scores(probs, truth.cells, maps["full"], method="map"), truth.cells)
        for g in points:
            points[g].append(point_hits(maps[g], truth.regions, truth.cells > 0, labels))
    scores = {name: _round(cell_map_with_interval(d)) for name, d in judged.items()}
    diffs = {f"{name}_minus_image": _round(paired_cell_map_difference(judged[name], judged["image"]))
             for name in ("map_full", "map_grid8", "map_grid4", "map_grid2", "blend_grid4")}
    diffs["map_full_minus_image_true_cells"] = _round(
        paired_cell_map_difference(judged["map_full_true_cells"], judged["image_true_cells"]))
    pointing = {g: _round(pointing_game(p, NUM_CLASSES)["all"]) for g, p in points.items()}
    return report("cell_labels", {
        "images": n, "size": size, "classes_scored": scores["image"]["n_classes"], "per_cell_map": scores,
        "paired": diffs, "pointing_game": pointing,
        **{f"{k}_ms_per_image": round(1000 * v / n, 2) for k, v in cost.items()},
    })

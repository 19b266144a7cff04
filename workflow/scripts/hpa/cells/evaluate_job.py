"""The per-cell stages scored against a test set's cell truth (``hpa.cells.truth``; the demo's own).

- ``evaluate_segmentation``: matched-cell F1 at IoU 0.5 of the masks the pipeline used (the
  embedded segmentation's or the user's), against one disk per nucleus, the segmentation that
  needs no cell-body stain, as a paired difference over the same images.
- ``evaluate_cells``: per-cell mAP the 2021 way of each per-cell method (``image``, the no-map
  baseline; ``map``; ``blend``; ``masked``) with intervals, and each one's paired gain over
  ``image`` and over a second baseline, ``centre``: ``map`` scoring with one fixed bump in the
  middle of every field for every class, which knows nothing of the image. Cells cut by the
  field's border are fewer and show fewer labels than whole ones, so any map brighter in the
  middle beats ``image``; a map that points at the pattern must also beat ``centre``.
  The pointing game of the ensemble's class maps per class against a random point of the cell area.
Images a stage skipped (no mask, not cached) are left out of both, and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.cells.label_metrics import compare_cell_maps, judge_cells, point_hits, pointing_game
from hpa.cells.frames import SQUARE
from hpa.cells.masks import load_masks
from hpa.cells.segment_metrics import cell_counts, iou_matrix, matched_f1_with_interval, paired_f1_difference
from hpa.cells.scores import METHODS, aligned, cell_scores, cells_of
from hpa.cells.segment import disk_cells, segment_nuclei
from hpa.cells.truth import read_cell_labels, regions_of
from hpa.data.images import decode_field
from hpa.data.ingest import manifest_files
from hpa.metrics import N_BOOT
from hpa.tables import prob_matrix

log = logging.getLogger(__name__)


def usable(images: pd.DataFrame, truth: dict, also=()) -> pd.DataFrame:
    """The rows of ``images`` (segment_cells' table) with a mask, a cell truth and an entry in each of ``also``."""
    keep = (images["problem"].fillna("") == "") & images["Id"].isin(truth)
    for known in also:
        keep &= images["Id"].isin(known)
    return images[keep]


def evaluate_segmentation(*, truth_dir, images: pd.DataFrame, masks_dir, manifest: pd.DataFrame, channels,
                          nucleus: str, depth, n_classes: int, n_boot: int = N_BOOT) -> dict:
    truth = read_cell_labels(Path(truth_dir) / "test_cells.csv", n_classes)
    rows = usable(images, truth)
    files = {r["Id"]: manifest_files(r, tuple(channels)) for r in manifest.to_dict("records")}
    used, disks = [], []
    for image_id in rows["Id"]:
        true = load_masks(Path(truth_dir) / "test_cells", image_id)
        used.append(cell_counts(true, load_masks(masks_dir, image_id, true.shape)))
        nuclei, radius = segment_nuclei(decode_field({nucleus: files[image_id][nucleus]}, None, depth)[0][0])
        disks.append(cell_counts(true, disk_cells(nuclei, radius)))
    if not used:
        raise ValueError(f"no test image has both a mask and a cell truth in {truth_dir}")
    return {"masks": matched_f1_with_interval(used, n_boot=n_boot),
            "disk_baseline": matched_f1_with_interval(disks, n_boot=n_boot),
            "difference": paired_f1_difference(used, disks, n_boot=n_boot),
            "n_images": len(used), "n_skipped": int(len(images) - len(used)), "iou": 0.5}


def centre_map(size: int = 8) -> np.ndarray:
    """The ``centre`` baseline's map: a Gaussian bump in the middle of the field (sigma a quarter of it)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.exp(-(yy**2 + xx**2) / (2 * (size / 4) ** 2))


def evaluate_cells(*, truth_dir, images: pd.DataFrame, masks_dir, probs: pd.DataFrame, map_ids, maps, fits: dict,
                   n_classes: int, weight: float, alone: dict | None = None, n_boot: int = N_BOOT) -> dict:
    truth = read_cell_labels(Path(truth_dir) / "test_cells.csv", n_classes)
    prob_of = dict(zip(probs["Id"], prob_matrix(probs, "test probabilities")))
    map_row = {i: k for k, i in enumerate(map_ids)}
    rows = usable(images, truth, (prob_of, map_row))
    judged = {m: [] for m in (*METHODS, "centre")}
    centre = np.broadcast_to(centre_map(), (n_classes, 8, 8))
    points = []
    for image_id in rows["Id"]:
        true = load_masks(Path(truth_dir) / "test_cells", image_id)
        pred = load_masks(masks_dir, image_id, true.shape)
        grid, fit = maps[map_row[image_id]].astype(np.float32), fits.get(image_id, SQUARE)
        ids, overlaps = cells_of(pred)[0], iou_matrix(true, pred)
        mine = aligned(alone or {}, image_id, ids, n_classes)
        for method in judged:
            how, given = ("map", centre) if method == "centre" else (method, grid)
            cells = cell_scores(prob_of[image_id], pred, given, how, weight, fit=fit, alone=mine)
            judged[method].append(judge_cells(true, truth[image_id], pred, cells.ids, cells.scores, overlaps=overlaps))
        shown = set().union(*truth[image_id].values())
        points.append(point_hits(dict(enumerate(grid)), regions_of(truth_dir, image_id), true > 0, shown, fit))
    if not points:
        raise ValueError(f"no test image has a mask, a class map and a cell truth in {truth_dir}")
    learned = [m for m in METHODS if m != "image"]
    bases = ("image", "centre")
    scores, differences = compare_cell_maps(judged, [(m, b) for b in bases for m in learned], n_boot=n_boot)
    scores = {m: _plain(score) for m, score in scores.items()}
    gains = {b: {m: differences[m, b] for m in learned} for b in bases}
    return {"cell_map": scores, "gain_over_image": gains["image"], "gain_over_centre": gains["centre"],
            "pointing": pointing_game(points, n_classes, n_boot=n_boot),
            "n_images": len(points), "n_skipped": int(len(images) - len(points)), "iou": 0.6}


def _plain(score: dict) -> dict:
    """JSON-ready: per-class arrays as lists (NaN, a class without true cells, as None)."""
    return {k: ([None if np.isnan(x) else float(x) for x in v] if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                else v.tolist() if isinstance(v, np.ndarray) else v) for k, v in score.items()}


def evaluation_table(segmentation: dict | None, cells: dict, classes) -> pd.DataFrame:
    """The report's table: one row per measure, with its interval, its baseline and the paired difference."""
    rows = []
    if segmentation:
        s, b, d = segmentation["masks"], segmentation["disk_baseline"], segmentation["difference"]
        rows.append({"measure": "segmentation: matched-cell F1 at IoU 0.5", "value": s["f1"], "low": s["low"],
                     "high": s["high"], "baseline": "a disk per nucleus", "baseline_value": b["f1"],
                     "difference": d["difference"], "difference_low": d["low"], "difference_high": d["high"]})
    for base, named in (("image", "image probabilities in every cell"), ("centre", "a fixed map bright in the middle")):
        for method in ("map", "blend", "masked"):
            s, d = cells["cell_map"][method], cells[f"gain_over_{base}"][method]
            rows.append({"measure": f"per-cell mAP at IoU 0.6, {method} scores", "value": s["map"], "low": s["low"],
                         "high": s["high"], "baseline": named, "baseline_value": cells["cell_map"][base]["map"],
                         "difference": d["difference"], "difference_low": d["low"], "difference_high": d["high"]})
    game = cells["pointing"]
    for key, name in [("all", "all classes"), *[(c, classes[c]) for c in sorted(game["classes"])]]:
        g = game["all"] if key == "all" else game["classes"][key]
        if not g.get("n"):
            continue
        rows.append({"measure": f"pointing game: {name} (n={g['n']})", "value": g["hit"], "low": g["hit_low"],
                     "high": g["hit_high"], "baseline": "a random point of the cells", "baseline_value": g["chance"],
                     "difference": g["difference"], "difference_low": g["difference_low"],
                     "difference_high": g["difference_high"]})
    return pd.DataFrame(rows).round(4)

"""Per-cell labels scored the 2021 way, and the pointing game of class maps; intervals over images.

**Per-cell mAP.** The 2021 competition scored submissions with the Open Images challenge's
instance evaluation (the organisers' ``oid_hpasc_challenge_evaluation.py``) at IoU 0.6:

- a predicted cell matches a true cell at IoU >= 0.6 (``hpa.cells.segment_metrics``; above 0.5 the
  match of non-overlapping label images is unique, so matching once per image equals Open
  Images' per-class greedy matching);
- a predicted (cell, class, confidence) is a true positive when its matched true cell shows
  that class, else a false positive; a true cell of a class that no prediction hits is missed;
- only classes verified in the image count (``verified_only``): Open Images ignores the
  detections of a class that the image's labels do not mention, and the organisers' truth
  listed an image's labels as those of its annotated cells; so a prediction of a class no true
  cell of the image shows is ignored, not a false positive. ``verified_only=False`` counts it
  (stricter: what a user who trusts every per-cell label sees);
- average precision per class: precision made non-increasing from the right, summed over the
  recall steps (all-point interpolation, Open Images' ``compute_average_precision``); tied
  confidences form one step (Open Images orders ties arbitrarily; here they do not depend on
  the order); the mean over classes with at least one true cell.

**Pointing game.** For each (image, class) the image truly has, with a map and a region where
the class was drawn: a hit when the map's peak (the centre of its highest grid cell, in image
pixels: ``peak_point``) lies in the region. Chance: a uniformly random point of the cell area
(the true cells' union) lands in the region with probability region area / cell area.

Intervals are percentile bootstraps over images on ``hpa.metrics``' resamples (each image
drawn k times counts k times), the same resamples for two scorings so they can be subtracted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpa.cells.frames import SQUARE, peak_in_image
from hpa.cells.segment_metrics import _assign, iou_matrix
from hpa.metrics import LEVEL, N_BOOT, _bounds, _resample_counts, bootstrap, difference_with_interval

IOU = 0.6  # the 2021 competition's matching threshold


@dataclass
class Detections:
    """One image's per-cell predictions, judged: ``classes``, ``scores``, ``hits`` (n,) and
    ``n_true`` (n_classes,): how many true cells show each class."""

    classes: np.ndarray
    scores: np.ndarray
    hits: np.ndarray
    n_true: np.ndarray


def _label_matrix(labels, ids: np.ndarray, n_classes: int) -> np.ndarray:
    """(len(ids), n_classes) bool: the classes of each true cell id."""
    by_id = labels if isinstance(labels, Mapping) else {k + 1: v for k, v in enumerate(labels)}
    out = np.zeros((len(ids), n_classes), bool)
    for row, cell in enumerate(ids):
        classes = list(by_id.get(int(cell), ()))
        if any(not 0 <= c < n_classes for c in classes):
            raise ValueError(f"true cell {cell}: classes {classes} outside 0..{n_classes - 1}")
        out[row, classes] = True
    return out


def judge_cells(true_mask, true_labels, pred_mask, pred_ids, scores, *, threshold: float = IOU,
                verified_only: bool = True, overlaps=None) -> Detections:
    """One image's predictions judged against its true cells.

    ``true_labels``: the classes of each true cell, a mapping cell id -> classes or a sequence
    whose item k belongs to cell k + 1 (as ``hpa.demo.truth.FieldTruth.labels``);
    ``pred_ids`` (n,) and ``scores`` (n, n_classes): the predicted cells of ``pred_mask``;
    ``overlaps``: ``iou_matrix(true_mask, pred_mask)`` where the caller has it (several scorings of one mask).
    """
    scores = np.asarray(scores, float)
    pred_ids = np.asarray(pred_ids)
    if scores.ndim != 2 or len(scores) != len(pred_ids):
        raise ValueError(f"scores must be (cells={len(pred_ids)}, n_classes), got shape {scores.shape}")
    n_classes = scores.shape[1]
    iou, t_ids, p_ids = overlaps if overlaps is not None else iou_matrix(true_mask, pred_mask)
    truth = _label_matrix(true_labels, t_ids, n_classes)
    rows, cols = _assign(iou, threshold)
    col = np.searchsorted(p_ids, pred_ids).clip(0, max(len(p_ids) - 1, 0))
    absent = (p_ids[col] != pred_ids) if len(p_ids) else np.ones(len(pred_ids), bool)
    if absent.any():
        raise ValueError(f"predicted cells {pred_ids[absent][:5].tolist()} are not in the predicted mask")
    true_row = np.full(len(p_ids), -1)
    true_row[cols] = rows
    matched = true_row[col] if len(p_ids) else np.zeros(0, int)
    hits = np.zeros(scores.shape, bool)
    hits[matched >= 0] = truth[matched[matched >= 0]]
    n_true = truth.sum(0)
    keep = np.broadcast_to(n_true > 0 if verified_only else np.ones(n_classes, bool), scores.shape)
    classes = np.broadcast_to(np.arange(n_classes), scores.shape)
    return Detections(classes[keep], scores[keep], hits[keep], n_true)


def _flatten(images: Sequence[Detections]):
    """Every prediction's class, score, hit and image index; true counts (images, classes)."""
    if not images:
        raise ValueError("no images to score")
    n_classes = {len(d.n_true) for d in images}
    if len(n_classes) != 1:
        raise ValueError(f"images scored with different numbers of classes: {sorted(n_classes)}")
    image = np.concatenate([np.full(len(d.scores), i) for i, d in enumerate(images)]).astype(int)
    cat = [np.concatenate([getattr(d, f) for d in images]) for f in ("classes", "scores", "hits")]
    return (*cat, image, np.stack([d.n_true for d in images]).astype(float))


def _average_precision(scores, hits, image, weights, n_true) -> np.ndarray:
    """AP of one class under each row of image ``weights`` (B, images); NaN where no true cell."""
    order = np.argsort(-scores, kind="stable")
    scores, hits, image = scores[order], hits[order], image[order]
    step = np.append(scores[1:] != scores[:-1], True)  # last prediction of each tie group
    w = weights[:, image]
    tp = np.cumsum(w * hits, axis=1)[:, step]
    fp = np.cumsum(w * ~hits, axis=1)[:, step]
    total = weights @ n_true
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / total[:, None]
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = (np.diff(recall, axis=1, prepend=0.0) * precision).sum(1)
    return np.where(total > 0, ap, np.nan)


def _ap_table(flat, weights: np.ndarray) -> np.ndarray:
    """(B, n_classes) AP under each row of ``weights``."""
    classes, scores, hits, image, n_true = flat
    out = np.full((len(weights), n_true.shape[1]), np.nan)
    for c in range(n_true.shape[1]):
        pick = classes == c
        if n_true[:, c].any():
            out[:, c] = _average_precision(scores[pick], hits[pick], image[pick], weights, n_true[:, c])
    return out


def _nanmean_rows(table: np.ndarray) -> np.ndarray:
    counted = ~np.isnan(table)
    return np.where(counted.any(1), np.nansum(table, 1) / np.maximum(counted.sum(1), 1), np.nan)


def cell_map(images: Sequence[Detections]) -> dict:
    """``{map, ap (per class, NaN without a true cell), n_true (per class), n_images, n_classes}``."""
    flat = _flatten(images)
    ap = _ap_table(flat, np.ones((1, len(images))))[0]
    return {"map": float(_nanmean_rows(ap[None])[0]), "ap": ap, "n_true": flat[-1].sum(0).astype(int),
            "n_images": len(images), "n_classes": int((~np.isnan(ap)).sum())}


def bootstrap_cell_map(*scorings: Sequence[Detections], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(scorings, n_boot) mAP of each scoring on the same resamples of the images."""
    flats = [_flatten(s) for s in scorings]
    if len({len(s) for s in scorings}) != 1:
        raise ValueError(f"scorings cover different numbers of images: {[len(s) for s in scorings]}")
    return bootstrap(lambda flat, w: _nanmean_rows(_ap_table(flat, w)), flats, len(scorings[0]),
                     n_boot=n_boot, seed=seed)


def cell_map_with_interval(images, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> dict:
    """``cell_map`` plus ``low, high``: its percentile bootstrap interval over images."""
    score = cell_map(images)
    low, high = _bounds(bootstrap_cell_map(images, n_boot=n_boot, seed=seed)[0], level)
    return score | {"low": low, "high": high}


def paired_cell_map_difference(images_a, images_b, *, n_boot: int = N_BOOT, seed: int = 0,
                               level: float = LEVEL) -> dict:
    """``{difference, low, high, p_not_better}``: per-cell mAP of scoring a minus b, same images."""
    a, b = bootstrap_cell_map(images_a, images_b, n_boot=n_boot, seed=seed)
    return difference_with_interval(cell_map(images_a)["map"], cell_map(images_b)["map"], a, b, level)


def compare_cell_maps(scorings: Mapping[str, Sequence[Detections]], pairs, *, n_boot: int = N_BOOT, seed: int = 0,
                      level: float = LEVEL) -> tuple[dict, dict]:
    """Every scoring's ``cell_map_with_interval`` and each (a, b) of ``pairs``' ``paired_cell_map_difference``
    (the same figures, from one pass of resamples shared by all): ({name: score}, {(a, b): difference})."""
    names = list(scorings)
    boot = bootstrap_cell_map(*(scorings[n] for n in names), n_boot=n_boot, seed=seed)
    scores = {}
    for row, name in enumerate(names):
        low, high = _bounds(boot[row], level)
        scores[name] = cell_map(scorings[name]) | {"low": low, "high": high}
    differences = {}
    for a, b in pairs:
        differences[a, b] = difference_with_interval(scores[a]["map"], scores[b]["map"], boot[names.index(a)],
                                                     boot[names.index(b)], level)
    return scores, differences


# The pointing game.
def peak_point(grid: np.ndarray, shape: tuple[int, int]) -> tuple[int, int]:
    """The pixel (row, column) of an image of ``shape`` under the centre of the map's highest grid
    cell (the first if tied). Where the bilinearly upsampled map peaks, but well defined: the
    upsampled map is flat beyond the outer cells' centres, and an argmax there would pick the
    plateau's corner, biasing peaks towards the image's corners."""
    grid = np.asarray(grid, float)
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    return int((i + 0.5) * shape[0] / grid.shape[0]), int((j + 0.5) * shape[1] / grid.shape[1])


def point_hits(maps: Mapping[int, np.ndarray], regions: Mapping[int, np.ndarray], foreground: np.ndarray,
               classes, fit: str = SQUARE) -> list[tuple[int, bool, float]]:
    """(class, hit, chance) for each class of ``classes`` (the image's true ones) that has a map
    and a non-empty region; ``regions`` and ``foreground`` (the cell area) are bool (H, W); the maps
    cover the square the model saw (``fit``, ``hpa.cells.frames``): a peak off the image misses."""
    foreground = np.asarray(foreground, bool)
    area = foreground.sum()
    out = []
    for c in sorted(int(c) for c in classes):
        region = regions.get(c)
        if c not in maps or region is None or not region.any() or area == 0:
            continue
        if region.shape != foreground.shape:
            raise ValueError(f"class {c}: region {region.shape} and cell area {foreground.shape} differ in shape")
        peak = peak_point(maps[c], region.shape) if fit == SQUARE else peak_in_image(maps[c], region.shape, fit)
        out.append((c, peak is not None and bool(region[peak]), float((region & foreground).sum() / area)))
    return out


def pointing_game(images: Sequence[list[tuple[int, bool, float]]], n_classes: int, *, n_boot: int = N_BOOT,
                  seed: int = 0, level: float = LEVEL) -> dict:
    """Hit rate against chance, per class and pooled, with intervals over images.

    ``images``: ``point_hits`` of each image. Returns ``{"classes": {c: {n, hit, hit_low,
    hit_high, chance, chance_low, chance_high}}, "all": {the same, plus difference (hit -
    chance) with its interval}}``; classes never tested are left out.
    """
    rows = [(i, c, h, p) for i, image in enumerate(images) for c, h, p in image]
    if not rows:
        return {"classes": {}, "all": {"n": 0}}
    image, cls, hit, chance = (np.array(v) for v in zip(*rows))
    if cls.max() >= n_classes:
        raise ValueError(f"pointing records of class {cls.max()} with n_classes={n_classes}")
    tested = np.unique(cls)
    onehot = np.zeros((len(rows), len(tested) + 1))  # a column per tested class, then all pooled
    onehot[np.arange(len(rows)), np.searchsorted(tested, cls)] = 1
    onehot[:, -1] = 1
    values = np.stack([hit.astype(float), chance, hit - chance])  # (3, rows)

    def rates(weights):  # (B, images) -> (3, B, classes + 1)
        w = weights[:, image]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w[None] * values[:, None]) @ onehot / (w @ onehot)[None]

    point = rates(np.ones((1, len(images))))[:, 0]
    boot = np.concatenate([rates(w) for w in _resample_counts(len(images), n_boot, seed)], axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(boot, tail, axis=1), np.nanpercentile(boot, 100 - tail, axis=1)

    def summary(j):
        out = {"n": int(onehot[:, j].sum())}
        for k, name in enumerate(("hit", "chance", "difference")):
            out |= {name: float(point[k, j]), f"{name}_low": float(low[k, j]), f"{name}_high": float(high[k, j])}
        return out

    return {"classes": {int(c): summary(j) for j, c in enumerate(tested)}, "all": summary(len(tested))}

"""The per-cell stages scored against a test set's cell truth (``hpa.cells.truth``; the demo's own).

- ``evaluate_segmentation``: matched-cell F1 at IoU 0.5 of the masks the pipeline used (the
  embedded segmentation's or the user's), against one disk per nucleus, the segmentation that
  needs no cell-body stain, as a paired difference over the same images.
- ``evaluate_cells``: per-cell mAP the 2021 way of each per-cell method (``image``, the no-map
  baseline; ``map``; ``blend``; ``masked``; ``gated``) with intervals, and each one's paired gain over
  ``image`` and over a second baseline, ``centre``: ``map`` scoring with one fixed bump in the
  middle of every field for every class, which knows nothing of the image. Cells cut by the
  field's border are fewer and show fewer labels than whole ones, so any map brighter in the
  middle beats ``image``; a map that points at the pattern must also beat ``centre``. The default
  method (``gated``) is also scored against its own scores flattened (every cell its image's
  highest), the no-map baseline a user can make from its submission alone. With a cell-level model
  (``cells.model``) ``gated`` blends it in, and is also scored against ``gated`` from the image models
  alone (``image_models``: weight 0) and against the cell model's probabilities alone (``cell_model``:
  weight 1).
  Each learned method is scored as its submission gives it: discounted for partial cells
  (``cells.partial_cells``, ``hpa.cells.scores.whole_shares``); the baselines ``image`` and ``centre``
  are not, and a third one, ``whole``, is the image's probabilities with the same discount: what the
  discount alone, which learns nothing, gives.
  The pointing game per class against a random point of the cell area, of the located maps
  (``hpa.cells.located``) and of the model's own maps at their feature grid (a 2x2 grid at the
  demo's 64 px cannot point: four fixed points per field).
  Every figure over all images, then apart for images whose cells all show their image's labels
  (``cells_agree``, as most of the atlas's) and for those whose cells vary.
Images a stage skipped (no mask, not cached) are left out of both, and counted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.cells.frames import SQUARE
from hpa.cells.label_metrics import compare_cell_maps, judge_cells, point_hits, pointing_game
from hpa.cells.located import located_maps
from hpa.cells.masks import load_masks
from hpa.cells.scores import METHODS, aligned, cell_scores, cells_of, confidences, whole_shares
from hpa.cells.segment import disk_cells, segment_nuclei
from hpa.cells.segment_metrics import cell_counts, iou_matrix, matched_f1_with_interval, paired_f1_difference
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


KINDS = ("all", "agree", "vary")
KIND_NAMES = {"all": "all images", "agree": "images whose cells agree", "vary": "images whose cells vary"}
DEFAULT = "gated"  # the schema's cells.method; its flattened scores are the no-map baseline from its own file


def cells_agree(labels: dict) -> bool:
    """Whether every true cell of an image shows every class of the image (as most of the atlas's do)."""
    shown = set().union(*labels.values()) if labels else set()
    return all(set(v) == shown for v in labels.values())


def flattened(scores: np.ndarray) -> np.ndarray:
    """Every cell its image's highest score per class: the no-map baseline of a submission, made from itself."""
    return np.broadcast_to(scores.max(0, initial=0)[None], scores.shape)


def _judge_image(true, truth, pred, prob, grid, fit, mine, thresholds, weight, n_classes, partial, crops=None) -> dict:
    """One image's Detections under every scoring of ``evaluate_cells``; ``partial``: ``cells.partial_cells``,
    which the learned methods' scores are given (the baselines' are not); ``crops``: the cell model's
    evidence (``hpa.cells.cell_model.CellModel.evidence``), which the default method blends in."""
    overlaps = iou_matrix(true, pred)
    ids, _, areas = cells_of(pred)
    whole = whole_shares(pred, ids, areas)

    def judged(scores):
        return judge_cells(true, truth, pred, ids, scores, overlaps=overlaps)

    out = {}
    for method in (*METHODS, "centre"):
        how, given = ("map", np.broadcast_to(centre_map(), (n_classes, 8, 8))) if method == "centre" else (method, grid)
        scores = cell_scores(prob, pred, given, how, weight, fit=fit, alone=mine, thresholds=thresholds,
                             cell_model=crops if method == DEFAULT else None).scores
        submitted = scores if method in ("image", "centre") else confidences(scores, whole, partial)
        out[method] = judged(submitted)
        if method == DEFAULT:
            out["flattened"] = judged(flattened(submitted))
        if method == "image" and partial == "discount":
            out["whole"] = judged(confidences(scores, whole, partial))
    if crops is not None:
        q, w = crops
        for name, blend in (("image_models", (q, np.zeros_like(w))), ("cell_model", (q, np.ones_like(w)))):
            scores = cell_scores(prob, pred, None, DEFAULT, fit=fit, alone=mine, thresholds=thresholds, cell_model=blend)
            out[name] = judged(confidences(scores.scores, whole, partial))
    return out


def _pointing(true, truth, regions, grid, fit, pred, mine, protein) -> dict:
    """(class, hit, chance) records of the model's maps and of the located maps (``hpa.cells.located``)."""
    shown = set().union(*truth.values())
    located = located_maps(grid, pred, cells_of(pred)[0], mine, protein, fit)
    return {"model": point_hits(dict(enumerate(grid)), regions, true > 0, shown, fit),
            "located": point_hits(dict(enumerate(located)), regions, true > 0, shown, fit)}


def _compare(judged: dict, n_boot: int) -> dict:
    """Every scoring's mAP with its interval, and each learned one's paired gain over each baseline."""
    learned = [m for m in METHODS if m != "image"]
    pairs = [(m, b) for b in ("image", "centre") for m in learned] + [(DEFAULT, "flattened")]
    # With the partial-cell discount (whole) and a cell model (its two parts), the default against those too.
    more = [m for m in ("whole", "image_models", "cell_model") if m in judged]
    scores, differences = compare_cell_maps(judged, pairs + [(DEFAULT, m) for m in more], n_boot=n_boot)
    out = {"cell_map": {m: _plain(score) for m, score in scores.items()},
           "gain_over_image": {m: differences[m, "image"] for m in learned},
           "gain_over_centre": {m: differences[m, "centre"] for m in learned},
           "gain_over_flattened": {DEFAULT: differences[DEFAULT, "flattened"]}}
    if "whole" in more:
        out["gain_over_whole"] = {DEFAULT: differences[DEFAULT, "whole"]}
    if blends := [m for m in more if m != "whole"]:
        out["gain_over_parts"] = {m: differences[DEFAULT, m] for m in blends}
    return out


def evaluate_cells(*, truth_dir, images: pd.DataFrame, masks_dir, probs: pd.DataFrame, map_ids, maps, fits: dict,
                   n_classes: int, weight: float, thresholds, proteins: dict, alone: dict | None = None,
                   cell_model=None, partial: str = "discount", n_boot: int = N_BOOT) -> dict:
    """Per-cell mAP of every method and baseline and the pointing game of the model's and the located maps, over
    all images and apart for images whose cells agree and vary (``cells_agree``). ``proteins``: Id -> the
    cached field's protein channel (S, S); ``thresholds`` (n_classes,): the ensemble's applied ones;
    ``cell_model``: the fitted ``hpa.cells.cell_model.CellModel``, if any; ``partial``: ``cells.partial_cells``."""
    truth = read_cell_labels(Path(truth_dir) / "test_cells.csv", n_classes)
    prob_of = dict(zip(probs["Id"], prob_matrix(probs, "test probabilities")))
    map_row = {i: k for k, i in enumerate(map_ids)}
    rows = usable(images, truth, (prob_of, map_row, proteins))
    judged, points, agree = [], {"model": [], "located": []}, []
    for image_id in rows["Id"]:
        true = load_masks(Path(truth_dir) / "test_cells", image_id)
        pred = load_masks(masks_dir, image_id, true.shape)
        grid, fit = maps[map_row[image_id]].astype(np.float32), fits.get(image_id, SQUARE)
        cell_ids = cells_of(pred)[0]
        mine = aligned(alone or {}, image_id, cell_ids, n_classes)
        crops = cell_model.evidence(image_id, cell_ids) if cell_model is not None else None
        judged.append(_judge_image(true, truth[image_id], pred, prob_of[image_id], grid, fit, mine, thresholds,
                                   weight, n_classes, partial, crops))
        for name, hits in _pointing(true, truth[image_id], regions_of(truth_dir, image_id), grid, fit, pred, mine,
                                    proteins[image_id]).items():
            points[name].append(hits)
        agree.append(cells_agree(truth[image_id]))
    if not judged:
        raise ValueError(f"no test image has a mask, a class map and a cell truth in {truth_dir}")
    agree = np.array(agree)
    out = {"n_images": len(judged), "n_skipped": int(len(images) - len(judged)), "iou": 0.6}
    for kind, keep in (("all", np.ones_like(agree)), ("agree", agree), ("vary", ~agree)):
        picked = [j for j, k in zip(judged, keep) if k]
        part = _compare({m: [j[m] for j in picked] for m in judged[0]}, n_boot) if picked else {}
        part |= {"n_images": len(picked),
                 "pointing": pointing_game([p for p, k in zip(points["located"], keep) if k], n_classes, n_boot=n_boot),
                 "pointing_model": pointing_game([p for p, k in zip(points["model"], keep) if k], n_classes,
                                                 n_boot=n_boot)}
        out |= part if kind == "all" else {}
        out.setdefault("by_kind", {})[kind] = part
    return out


def _plain(score: dict) -> dict:
    """JSON-ready: per-class arrays as lists (NaN, a class without true cells, as None)."""
    return {k: ([None if np.isnan(x) else float(x) for x in v] if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                else v.tolist() if isinstance(v, np.ndarray) else v) for k, v in score.items()}


def _row(measure, s, baseline, d, value="map") -> dict:
    return {"measure": measure, "value": s[value], "low": s["low"], "high": s["high"], "baseline": baseline,
            "difference": d["difference"], "difference_low": d["low"], "difference_high": d["high"]}


def _map_rows(part: dict, kind: str) -> list[dict]:
    """Per-cell mAP rows of one kind of images: each learned method against each baseline."""
    rows, scored = [], part["cell_map"]
    where = f"{KIND_NAMES[kind]} (n={part['n_images']})"
    bases = [("image", "image probabilities in every cell"), ("centre", "a fixed map bright in the middle")]
    for base, named in bases:
        for method in ("map", "blend", "masked", "gated"):
            rows.append(_row(f"per-cell mAP at IoU 0.6, {method} scores, {where}", scored[method], named,
                             part[f"gain_over_{base}"][method]) | {"baseline_value": scored[base]["map"]})
    rows.append(_row(f"per-cell mAP at IoU 0.6, {DEFAULT} scores, {where}", scored[DEFAULT],
                     f"its own submission flattened (every cell its image's highest {DEFAULT} score)",
                     part["gain_over_flattened"][DEFAULT]) | {"baseline_value": scored["flattened"]["map"]})
    if "gain_over_whole" in part:
        rows.append(_row(f"per-cell mAP at IoU 0.6, {DEFAULT} scores, {where}", scored[DEFAULT],
                         "image probabilities discounted for partial cells (no learning)",
                         part["gain_over_whole"][DEFAULT]) | {"baseline_value": scored["whole"]["map"]})
    parts = {"image_models": f"{DEFAULT} from the image models alone (no cell model)",
             "cell_model": "the cell model's probabilities alone (weight 1)"}
    for part_name, gain in part.get("gain_over_parts", {}).items():
        rows.append(_row(f"per-cell mAP at IoU 0.6, {DEFAULT} scores with the cell model, {where}", scored[DEFAULT],
                         parts[part_name], gain) | {"baseline_value": scored[part_name]["map"]})
    return rows


def _pointing_rows(game: dict, classes, maps: str, kind: str) -> list[dict]:
    rows = []
    for key, name in [("all", "all classes"), *[(c, classes[c]) for c in sorted(game["classes"])]]:
        g = game["all"] if key == "all" else game["classes"][key]
        if not g.get("n") or (kind != "all" and key != "all"):
            continue
        where = "" if kind == "all" else f", {KIND_NAMES[kind]}"
        rows.append({"measure": f"pointing game, {maps}: {name}{where} (n={g['n']})", "value": g["hit"],
                     "low": g["hit_low"], "high": g["hit_high"], "baseline": "a random point of the cells",
                     "baseline_value": g["chance"], "difference": g["difference"],
                     "difference_low": g["difference_low"], "difference_high": g["difference_high"]})
    return rows


def evaluation_table(segmentation: dict | None, cells: dict, classes) -> pd.DataFrame:
    """The report's table: one row per measure, with its interval, its baseline and the paired difference;
    per-cell mAP and the pointing game over all images, then apart for images whose cells agree and vary."""
    rows = []
    if segmentation:
        s, b, d = segmentation["masks"], segmentation["disk_baseline"], segmentation["difference"]
        rows.append({"measure": "segmentation: matched-cell F1 at IoU 0.5", "value": s["f1"], "low": s["low"],
                     "high": s["high"], "baseline": "a disk per nucleus", "baseline_value": b["f1"],
                     "difference": d["difference"], "difference_low": d["low"], "difference_high": d["high"]})
    for kind in KINDS:
        part = cells["by_kind"][kind]
        if not part.get("n_images"):
            continue
        rows += _map_rows(part, kind)
        rows += _pointing_rows(part["pointing"], classes, "located maps", kind)
        rows += _pointing_rows(part["pointing_model"], classes, "the model's maps (its feature grid)", kind)
    return pd.DataFrame(rows).round(4)

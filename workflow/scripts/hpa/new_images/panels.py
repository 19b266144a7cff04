"""Panels for new images (the ``new_image_panels`` rule): for each image ``predict_new`` classified,
where the ensemble sees each of its predicted classes, and in which cells.

Per image: the cells segmented from its own stains (``hpa.cells.segment``), every member's
class maps averaged as ``cell_labels`` averages them, and each cell shown alone to every
member (``hpa.inference.per_cell``); the cells are scored by ``cells.method`` as ``cell_labels`` scores
the test cells (the default ``gated`` with the thresholds ``predict_new`` applied; the cell-level model is
not run on new images) and labelled by those thresholds. One JPEG per image (``hpa.cells.gallery``):
a row per predicted class (the most probable one, marked, where none reaches its threshold) and a
table of every cell's scores beside them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.cells.frames import SQUARE
from hpa.cells.gallery import composite, page, protein_channel, protein_panel, row_image
from hpa.cells.maps import average_maps, empty_table, labelled_table
from hpa.cells.scores import cell_scores
from hpa.cells.segment import segment
from hpa.data.images import decode_field, load_image
from hpa.dihedral import transforms_for
from hpa.files import InputError, atomic_path, write_csv
from hpa.inference.cams import class_maps
from hpa.inference.per_cell import alone, masked_fields
from hpa.new_images.ensemble import load_members
from hpa.new_images.folder import list_images
from hpa.postprocess.submission import applied_thresholds, images_to_match
from hpa.runtime.device import autocast_dtype, pick_device

log = logging.getLogger(__name__)

MAX_ROWS = 4  # predicted classes drawn per image


def image_cells(files, members: list, vocabulary, *, nucleus: str, body: list[str], depth,
                fit: str, tta: str):
    """(native planes, mask, maps (classes, h, w), each cell's probabilities alone (cells, classes), the fit
    of the model's square) of one image ({channel: file}); maps and cells alone over ``tta``'s views
    (``cells.tta``)."""
    planes = dict(zip(files, decode_field(files, None, depth)[0]))
    mask = segment(planes[nucleus], [planes[c] for c in body]).cells
    frame_fit = fit if mask.shape[0] != mask.shape[1] else SQUARE
    device = pick_device()
    maps, probs = [], []
    for model, ckpt in members:
        field = load_image(files, ckpt["config"]["image_size"], depth, fit=fit)
        maps.append(class_maps(model, field[None], views=transforms_for(tta)))
        _, fields = masked_fields(field, mask, frame_fit)
        amp = autocast_dtype(device, ckpt["config"]["model"].get("amp"))
        probs.append(alone(model, fields, transforms_for(tta), amp=amp, device=device) if len(fields)
                     else np.zeros((0, vocabulary.n_classes), np.float32))
    return planes, mask, average_maps(maps)[0], np.mean(probs, axis=0), frame_fit


def write_panels(folder, predictions: pd.DataFrame, checkpoints: dict[str, list[str]], record: dict, out_dir, *,
                 nucleus: str, body: list[str], depth, fit: str, tta: str = "none", method: str = "gated",
                 weight: float = 0.5) -> pd.DataFrame:
    """``out_dir/{Id}.jpg`` for every ``ok`` row of ``predictions`` (predict_new's table),
    ``out_dir/cells.csv`` (every cell's box, area, scores and labels) and ``out_dir/skipped.csv``
    (images that could not be drawn, with the reason); returns the cells table."""
    models, vocabulary = load_members(checkpoints, pick_device())
    members = [loaded for per_model in models.values() for loaded in per_model]
    columns = [f"p_{name}" for name in vocabulary.classes]
    usable = predictions[predictions["ok"].astype(bool)].reset_index(drop=True)
    probs = usable[columns].to_numpy(float)
    min_images = images_to_match(record["train_frequency"]) if record["method"] == "match_distribution" else 0
    thresholds, _ = applied_thresholds(record, probs, min_images)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables, skipped = [], []
    files, _ = list_images(folder, vocabulary.channels)
    for row, image_id in enumerate(usable["Id"]):
        try:
            if image_id not in files:
                raise InputError(f"{image_id}: no longer in {folder}, or no longer readable; rerun predict_new")
            planes, mask, maps, cells_alone, frame_fit = image_cells(
                files[image_id], members, vocabulary, nucleus=nucleus, body=body, depth=depth, fit=fit, tta=tta)
        except (InputError, OSError, ValueError) as err:  # one bad image is recorded, not the end of the folder
            log.warning("no panel for %s: %s", image_id, err)
            skipped.append({"Id": image_id, "reason": str(err)})
            continue
        cells = cell_scores(probs[row], mask, maps, method, weight, fit=frame_fit, alone=cells_alone,
                            thresholds=thresholds)
        table, shown = labelled_table(image_id, cells, thresholds, vocabulary.classes)
        tables.append(table)
        colour = composite(planes, vocabulary.rgb)
        protein = protein_panel(planes[protein_channel(vocabulary)])
        predicted = np.flatnonzero(probs[row] >= thresholds)
        order = predicted[np.argsort(-probs[row][predicted])] if len(predicted) else [int(np.argmax(probs[row]))]
        rows = []
        for c in list(order)[:MAX_ROWS]:
            labelled = {int(i) for i, s in zip(cells.ids, shown[:, c]) if s}
            note = "" if c in predicted else "  (below its threshold: no class predicted)"
            scores = dict(zip(cells.ids.tolist(), cells.scores[:, c]))
            rows.append(row_image(protein, colour, maps[c], frame_fit, mask, scores,
                                  labelled, f"{vocabulary.classes[c]}  p={probs[row, c]:.2f}{note}"))
        with atomic_path(out_dir / f"{image_id}.jpg") as tmp:
            page(f"{image_id}: {len(cells.ids)} cells", rows).save(tmp, format="JPEG", quality=90)
    log.info("%d panels written to %s", len(usable), out_dir)
    table = pd.concat(tables, ignore_index=True) if tables else empty_table(vocabulary.n_classes)
    write_csv(table, out_dir / "cells.csv")
    write_csv(pd.DataFrame(skipped, columns=["Id", "reason"]), out_dir / "skipped.csv")
    return table

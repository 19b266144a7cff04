"""The ``segment_cells`` rule: a cell mask per test image, at the image's own size.

Each mask is ``{Id}.png`` (16-bit labels, 0 = background), from the embedded segmentation
(``hpa.cells.segment``) of the decoded nuclear and cell-body channels, or read from the
user's own folder (``cells.masks``, ``hpa.cells.masks``) and checked against the image's
size. Beside them: ``cells.csv`` (a row per cell: Id, cell, box, area) and ``images.csv``
(a row per image: its size, its number of cells, the flags of a mask that looks wrong, and the
problem that skipped it, if any).
An image whose files cannot be read, or whose user mask is missing or wrong, is recorded
there and skipped; more than ``max_rejected_fraction`` of them stop the run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.cells.masks import load_masks
from hpa.cells.scores import cells_of
from hpa.cells.segment import image_flags, segment
from hpa.data.images import decode_field
from hpa.data.ingest import manifest_files
from hpa.data.stacks import open_image
from hpa.files import InputError, atomic_path, write_csv
from hpa.parallel import run_tasks

log = logging.getLogger(__name__)

# The flags (hpa.cells.segment.image_flags): cells no bigger than their nucleus (-1 for the user's
# masks, whose nuclei are not known), cells with a hole, cells cut by the border.
FLAGS = ["small_cells", "holey_cells", "border_cells"]
IMAGE_COLUMNS = ["Id", "width", "height", "cells", "nucleus_radius", *FLAGS, "problem"]
CELL_COLUMNS = ["Id", "cell", "x0", "y0", "x1", "y1", "area"]


def segment_one(task: dict) -> dict:
    """One image's mask written under ``task["out"]``; its image row and cell rows (problems recorded, not raised)."""
    image_id, files = task["Id"], task["files"]
    row = {"Id": image_id, "width": 0, "height": 0, "cells": 0, "nucleus_radius": math.nan, "problem": ""}
    row |= dict.fromkeys(FLAGS, 0)
    nuclei = None
    try:
        if task["masks"]:
            with open_image(files[task["nucleus"]]) as im:
                shape = (im.height, im.width)
            mask = load_masks(task["masks"], image_id, shape)
        else:
            wanted = {c: files[c] for c in (task["nucleus"], *task["body"])}
            planes = dict(zip(wanted, decode_field(wanted, None, task["depth"], task["yellow"])[0]))
            found = segment(planes[task["nucleus"]], [planes[c] for c in task["body"]])
            mask, nuclei, row["nucleus_radius"] = found.cells, found.nuclei, round(float(found.nucleus_radius), 3)
        if mask.max(initial=0) > np.iinfo(np.uint16).max:
            raise InputError(f"{mask.max()} cells do not fit a 16-bit label image")
        with atomic_path(Path(task["out"]) / f"{image_id}.png") as tmp:
            Image.fromarray(mask.astype(np.uint16)).save(tmp, format="PNG", compress_level=1)
    except (InputError, OSError, ValueError) as err:
        return row | {"problem": f"{image_id}: {err}", "rows": []}
    ids, boxes, areas = cells_of(mask)
    row |= {"height": mask.shape[0], "width": mask.shape[1], "cells": len(ids)} | image_flags(mask, nuclei)
    cells = [{"Id": image_id, "cell": int(i), "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "area": int(a)}
             for i, b, a in zip(ids, boxes.tolist(), areas)]
    return row | {"rows": cells}


def flagged(images: pd.DataFrame) -> pd.Series:
    """Which rows of images.csv look wrong: a cell no bigger than its nucleus, or with a hole (cells cut
    by the border are counted, not flagged: every field cuts some). Tables without flags: none."""
    if not set(FLAGS) <= set(images.columns):
        return pd.Series(False, index=images.index)
    return (images["small_cells"] > 0) | (images["holey_cells"] > 0)


def segment_images(manifest: pd.DataFrame, out_dir, cells_csv, images_csv, *, channels: tuple[str, ...],
                   nucleus: str, body: list[str], depth, masks=None, yellow: str = "rg_mean",
                   max_rejected_fraction: float = 0.0, workers: int = 1, record=None) -> pd.DataFrame:
    """Masks of every manifest row (``out_dir/{Id}.png``), ``cells_csv`` and ``images_csv``; the image rows.
    ``record``: a copy of ``images_csv`` that outlives a failed run (Snakemake removes its outputs)."""
    unknown = [c for c in (nucleus, *body) if c not in channels]
    if unknown:
        raise InputError(f"cells: channels {unknown} are not the dataset's ({', '.join(channels)}); "
                         "set cells.nucleus_channel and cells.body_channels to its names")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tasks = [{"Id": r["Id"], "files": {c: str(p) for c, p in manifest_files(r, channels).items()}, "nucleus": nucleus,
              "body": list(body), "depth": depth, "yellow": yellow, "masks": str(masks) if masks else None,
              "out": str(out_dir)} for r in manifest.to_dict("records")]
    done = sorted(run_tasks(segment_one, tasks, workers), key=lambda r: r["Id"])
    images = pd.DataFrame([{k: r[k] for k in IMAGE_COLUMNS} for r in done], columns=IMAGE_COLUMNS)
    cells = pd.DataFrame([c for r in done for c in r["rows"]], columns=CELL_COLUMNS)
    bad = images[images["problem"] != ""]
    for problem in bad["problem"].head(10):
        log.warning("skipped: %s", problem)
    for path in (images_csv, record):
        if path is not None:
            write_csv(images, path)
    if len(images) and len(bad) / len(images) > max_rejected_fraction:
        where = f"the masks in {masks}" if masks else "the images"
        raise InputError(f"cells: {len(bad)} of {len(images)} test images have no usable mask (more than "
                         f"data.max_rejected_fraction={max_rejected_fraction}); every problem is in {record or images_csv}. "
                         f"First: {bad['problem'].iloc[0]}. Fix {where}, or raise data.max_rejected_fraction")
    write_csv(cells, cells_csv)
    log.info("%d test images: %d cells (median %.0f per image), %d skipped, %d flagged", len(images), len(cells),
             images["cells"].median() if len(images) else 0, len(bad), int(flagged(images).sum()))
    return images

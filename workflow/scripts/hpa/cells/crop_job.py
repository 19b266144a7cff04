"""The ``cell_crops`` rule: every cell of a split's images as a crop (``hpa.cells.crops``), in a cache the
training loop reads as it reads the image cache.

Test cells come from ``segment_cells``' masks, so the crops are the cells the submission scores.
Training images are segmented here by the same code and settings (or read from ``cells.masks`` where
that folder holds their masks), and not written out: only their crops are needed.
Outputs: ``{split}.npy`` (n, C, size, size) uint8 and ``{split}.csv`` (``Id, cell, row, ok, x0, y0, x1, y1,
area``; one row per crop, ``row`` its place in the array). An image that cannot be read or segmented is
logged and skipped; more than ``max_rejected_fraction`` of them stop the run.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.cells.crops import cell_crops
from hpa.cells.masks import load_masks, mask_path
from hpa.cells.segment import segment
from hpa.data.images import decode_field
from hpa.data.ingest import manifest_files
from hpa.files import InputError, atomic_path, write_csv
from hpa.parallel import run_tasks

log = logging.getLogger(__name__)

COLUMNS = ["Id", "cell", "row", "ok", "x0", "y0", "x1", "y1", "area"]


class NpyRows:
    """A ``.npy`` of rows appended one batch at a time, its length known only at the end: the rows go to a
    raw file beside it, and ``finish`` writes the header and moves them under it (never half-written)."""

    def __init__(self, path, row_shape: tuple[int, ...], dtype=np.uint8):
        self.path, self.row_shape, self.dtype, self.n = Path(path), tuple(row_shape), np.dtype(dtype), 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.raw = self.path.with_name(f".{self.path.name}.rows")
        self.fh = open(self.raw, "wb")

    def append(self, rows: np.ndarray) -> int:
        """Append ``rows`` (k, *row_shape); returns the first one's row number."""
        first = self.n
        self.fh.write(np.ascontiguousarray(rows, self.dtype).tobytes())
        self.n += len(rows)
        return first

    def finish(self) -> None:
        self.fh.close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.n, *self.row_shape)}
        with atomic_path(self.path) as tmp, open(tmp, "wb") as out, open(self.raw, "rb") as rows:
            np.lib.format.write_array_header_2_0(out, header)
            shutil.copyfileobj(rows, out, 1 << 24)
        self.raw.unlink()

    def discard(self) -> None:
        self.fh.close()
        self.raw.unlink(missing_ok=True)


def field_mask(task: dict, field: np.ndarray) -> np.ndarray:
    """The image's cell mask: the given masks folder's (test: segment_cells'), the user's where they hold
    this image's, else the embedded segmentation of its nuclear and cell-body planes."""
    if task["masks"]:
        return load_masks(task["masks"], task["Id"], field.shape[1:])
    if task["user_masks"] and _has_mask(task["user_masks"], task["Id"]):
        return load_masks(task["user_masks"], task["Id"], field.shape[1:])
    planes = dict(zip(task["channels"], field))
    return segment(planes[task["nucleus"]], [planes[c] for c in task["body"]]).cells


def _has_mask(folder, image_id: str) -> bool:
    try:
        return bool(mask_path(folder, image_id))
    except InputError:
        return False


def crop_one(task: dict) -> dict:
    """One image's crops and cell rows, or its problem (recorded, not raised)."""
    try:
        field, _ = decode_field(task["files"], None, task["depth"], task["yellow"])
        ids, boxes, areas, crops = cell_crops(field, field_mask(task, field), task["size"], task["margin"],
                                              task["window"])
    except (InputError, OSError, ValueError) as err:
        return {"Id": task["Id"], "problem": f"{task['Id']}: {err}"}
    return {"Id": task["Id"], "problem": "", "ids": ids, "boxes": boxes, "areas": areas, "crops": crops}


def crop_images(manifest: pd.DataFrame, npy_path, index_path, *, channels: tuple[str, ...], nucleus: str,
                body: list[str], depth, size: int, margin: float = 0.0, window: int | None = None, masks=None, user_masks=None,
                skip=(), yellow: str = "rg_mean", max_rejected_fraction: float = 0.0,
                workers: int = 1) -> pd.DataFrame:
    """Crops of every cell of every manifest row but ``skip`` (Ids); returns the index table."""
    tasks = [{"Id": r["Id"], "files": {c: str(p) for c, p in manifest_files(r, channels).items()},
              "channels": channels, "nucleus": nucleus, "body": list(body), "depth": depth, "yellow": yellow,
              "masks": str(masks) if masks else None, "user_masks": str(user_masks) if user_masks else None,
              "size": size, "margin": margin, "window": window} for r in manifest.to_dict("records") if r["Id"] not in set(skip)]
    out = NpyRows(npy_path, (len(channels), size, size))
    tables, problems = [], []
    try:
        for done in sorted(run_tasks(crop_one, tasks, workers), key=lambda d: d["Id"]):
            if done["problem"]:
                problems.append(done["problem"])
                continue
            first = out.append(done["crops"])
            tables.append(pd.DataFrame({"Id": done["Id"], "cell": done["ids"],
                                        "row": np.arange(first, first + len(done["ids"])), "ok": True,
                                        **dict(zip(("x0", "y0", "x1", "y1"), done["boxes"].T)), "area": done["areas"]}))
        _check_problems(problems, len(tasks), max_rejected_fraction)
        out.finish()
    except BaseException:
        out.discard()
        raise
    for problem in problems[:10]:
        log.warning("skipped: %s", problem)
    index = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    write_csv(index[COLUMNS], index_path)
    log.info("%d images: %d cells cut at %d px (median %.0f per image), %d skipped", len(tasks), len(index), size,
             index.groupby("Id").size().median() if len(index) else 0, len(problems))
    return index


def _check_problems(problems: list[str], n: int, max_rejected_fraction: float) -> None:
    if n and len(problems) / n > max_rejected_fraction:
        raise InputError(f"cells.model: {len(problems)} of {n} images could not be cut into cells (more than "
                         f"data.max_rejected_fraction={max_rejected_fraction}). First: {problems[0]}. Fix the "
                         "images or masks, or raise data.max_rejected_fraction")

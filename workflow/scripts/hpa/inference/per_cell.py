"""What ``predict`` adds for the per-cell stages, on the test images: each class's map, and each cell's
probabilities with the rest of its field masked out.

- Class maps (``hpa.inference.cams``) at the model's feature grid, over the views of ``cells.tta``
  (each map brought back through its view's inverse; default the identity alone: on the demo,
  maps over the four flips cost as much as the fold's whole test pass and pointed no better).
- Cells alone: each cell of the test image's mask (``segment_cells``) is shown to the model as
  the field with every pixel outside the cell set to zero, at the cell's own place and scale
  (the cached field, not a crop resized: the model saw cells at that scale when it trained).
  What the model then says is about that cell only; ``hpa.cells.scores`` turns it into the
  cell's share of its image's probability (method ``masked``). One forward pass per cell and
  view: a field of seven cells costs seven images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hpa.cells.frames import SQUARE, model_frame
from hpa.cells.masks import load_masks
from hpa.cells.scores import cells_of
from hpa.dihedral import dihedral
from hpa.files import atomic_path
from hpa.inference.cams import class_maps
from hpa.models.dilation import dilated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellOutputs:
    """Where ``predict`` writes its per-cell outputs, and how it makes them."""

    maps: str  # the class maps (npz)
    cells: str  # the cells' probabilities (npz)
    masks: str  # segment_cells' folder of {Id}.png
    views: tuple[int, ...] = (0,)  # dihedral views of the maps and the cells-alone pass (cells.tta)
    dilate: int = 0


def finer(model, dilate: int):
    """The model with its last ``dilate`` stages undilated for a finer map grid (``hpa.models.dilation``)
    where it is a ResNet; any other model as it is (its grid is what it is), said in the log."""
    if not dilate:
        return model
    try:
        return dilated(model, dilate)
    except (ValueError, AttributeError) as err:
        log.info("class maps at the model's own grid: %s", err)
        return model


def write_maps(model, loader, ids, views, maps_npz) -> None:
    """Every class's map (``hpa.inference.cams``) of each image, averaged over ``views``, at the model's
    feature grid: ``ids`` (n,) and ``maps`` (n, classes, h, w) float16, for the per-cell stages.
    Maps cover the whole cached image, also for a model trained on crops (a CNN runs on any size)."""
    maps = [class_maps(model, x, views=views) for x in loader]
    maps = np.concatenate(maps) if maps else np.zeros((0, 0, 0, 0), np.float16)
    with atomic_path(maps_npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=ids, maps=maps)


def cells_in_frame(mask: np.ndarray, fit: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell ids, (cells, size, size) bool): each cell of a mask at its image's size where it lies in the
    cached field (the model's square, ``size`` px; nearest neighbour). A cell too small to keep a pixel
    there, or cut away by a crop, gets an empty plane."""
    ids = cells_of(mask)[0]
    frame = model_frame(mask, fit)
    small = np.asarray(Image.fromarray(frame.astype(np.int32)).resize((size, size), Image.NEAREST))
    return ids, small[None] == ids[:, None, None]


def _batches(cache, table, masks_dir, batch_size: int):
    """(image ids, cell ids, masked fields (b, C, S, S) uint8) of up to ``batch_size`` cells at a time."""
    ids, cells, fields = [], [], []
    for row, image_id, fit in zip(table["row"], table["Id"], table.get("fit", [SQUARE] * len(table))):
        found, masked = masked_fields(np.asarray(cache[row]), load_masks(masks_dir, image_id), fit or SQUARE)
        for cell, one in zip(found, masked):
            ids.append(image_id)
            cells.append(int(cell))
            fields.append(one)
            if len(fields) == batch_size:
                yield ids, cells, np.stack(fields)
                ids, cells, fields = [], [], []
    if fields:
        yield ids, cells, np.stack(fields)


@torch.no_grad()
def alone(model, fields: np.ndarray, views, *, amp=None, device=None) -> np.ndarray:
    """Sigmoid probabilities (cells, classes) float32 of masked fields (cells, C, S, S) uint8, mean over ``views``."""
    device = device or next(model.parameters()).device
    x = torch.from_numpy(fields).to(device)
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        return torch.stack([torch.sigmoid(model(dihedral(x, t)).float()) for t in views]).mean(0).cpu().numpy()


def masked_fields(field: np.ndarray, mask: np.ndarray, fit: str) -> tuple[np.ndarray, np.ndarray]:
    """(cell ids, (cells, C, S, S) uint8): the cached ``field`` (C, S, S) once per cell of ``mask``
    (the image's size), everything outside that cell set to zero."""
    ids, planes = cells_in_frame(mask, fit, field.shape[-1])
    return ids, field[None] * planes[:, None]


@torch.no_grad()
def write_cell_probabilities(model, cache, table, out: CellOutputs, *, batch_size: int, amp=None, device=None) -> int:
    """``out.cells``: ``ids`` and ``cells`` (one row per cell of every image of ``table``, the cache's
    rows and Ids; images without a mask file are skipped) and ``probs`` (rows, classes) float32, the
    mean over ``out.views``. Returns the number of cells."""
    model.eval()
    table = table[[(Path(out.masks) / f"{i}.png").is_file() for i in table["Id"]]]
    ids, cells, probs = [], [], []
    for batch_ids, batch_cells, fields in _batches(cache, table, out.masks, batch_size):
        ids += batch_ids
        cells += batch_cells
        probs.append(alone(model, fields, out.views, amp=amp, device=device))
    n_classes = probs[0].shape[1] if probs else 0
    with atomic_path(out.cells) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, str), cells=np.asarray(cells, np.int64),
                 probs=np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32))
    return len(ids)

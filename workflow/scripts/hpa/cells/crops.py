"""Cell crops: each cell of a field cut out at the field's own resolution, for the cell-level model.

A crop is a square centred on the cell's bounding box, every pixel outside the cell set to zero (a
neighbour's protein is not this cell's), resized to a fixed ``size``. The square is ``window`` px of
the field wide, or the cell's longer side where that is larger (or always, with no window). With a
window every cell is seen at one scale, as the field shows it: a sliver of a cell cut by the field's
border stays a sliver, and a pattern keeps its size (a nucleolus is not blown up to a nucleus's).
A cell of a 2048 px atlas field is seen at many times the detail the whole-field model's 512 px input
leaves it. Parts of the square beyond the field's border are zero, like the rest of the outside.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hpa.cells.scores import cells_of


def square_box(box, margin: float = 0.0, window: int | None = None) -> tuple[int, int, int]:
    """(x0, y0, side) of the square centred on ``box`` (x0, y0, x1, y1; exclusive ends): the box's longer
    side times ``1 + margin``, or ``window`` where that is larger."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = max(1, window or 1, int(round(max(x1 - x0, y1 - y0) * (1 + margin))))
    return (x0 + x1 - side) // 2, (y0 + y1 - side) // 2, side


def cut_square(plane: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """``plane[y0:y0+side, x0:x0+side]`` with zeros where the square leaves the plane."""
    out = np.zeros((side, side), plane.dtype)
    h, w = plane.shape
    ys, xs = slice(max(y0, 0), min(y0 + side, h)), slice(max(x0, 0), min(x0 + side, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = plane[ys, xs]
    return out


def cell_crops(field: np.ndarray, mask: np.ndarray, size: int, margin: float = 0.0, window: int | None = None):
    """(cell ids, boxes (n, 4), areas (n,), crops (n, C, size, size) uint8) of every cell of ``mask``
    (H, W) in ``field`` (C, H, W) uint8, as the module docstring says."""
    field, mask = np.asarray(field), np.asarray(mask)
    if field.ndim != 3 or field.shape[1:] != mask.shape:
        raise ValueError(f"a field (C, H, W) and its mask (H, W) must cover the same pixels, got {field.shape} "
                         f"and {mask.shape}")
    ids, boxes, areas = cells_of(mask)
    crops = np.zeros((len(ids), field.shape[0], size, size), np.uint8)
    for k, (cell, box) in enumerate(zip(ids, boxes)):
        x0, y0, side = square_box(box, margin, window)
        inside = cut_square(mask, x0, y0, side) == cell
        for c, plane in enumerate(field):
            cut = np.where(inside, cut_square(plane, x0, y0, side), 0).astype(np.uint8)
            crops[k, c] = np.asarray(Image.fromarray(cut).resize((size, size), Image.BILINEAR))
    return ids, boxes, areas, crops

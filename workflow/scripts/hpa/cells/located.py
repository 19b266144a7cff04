"""Class maps at the field's own pixels: the model's map, the cell it points to, and the protein itself.

A CNN's class map is as coarse as its feature grid: at the demo's 64 px a ResNet's is 2x2, so
its peak is one of four fixed points of every field and cannot point at a nucleolus (the
pointing game scored it below a random point of the cells, issue 28). The located map of
class c at the cached field's pixels (the square the model saw) is

    located_c = cam_c (bilinear, over its peak) x r_c(cell of the pixel) x protein,

- ``r_c``: what the models say of each cell alone (``hpa.inference.per_cell``) over the image's best
  cell's (``hpa.cells.scores.alone_ratios``), 0 off the cells: which cell shows the class;
- ``protein``: the protein channel as cached (where in that cell the stain is; the class's
  pattern is drawn in it, whatever the class);
- ``cam_c``: the model's own map, which still says which part of a field (or of a large cell)
  carries the class; a class whose map is zero everywhere gets a flat one.

Its peak is a pixel of the cell the model rates highest alone, where the protein is brightest
on the side the class map favours.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hpa.cells.frames import model_frame, upsample
from hpa.cells.scores import alone_ratios, dense_ids


def cells_at(mask: np.ndarray, ids: np.ndarray, fit: str, size: int) -> np.ndarray:
    """(size, size) int: the mask in the model's square at the cached size (nearest neighbour), each cell of
    ``ids`` as its index + 1 and everything else 0."""
    frame = model_frame(np.asarray(mask), fit)
    small = np.asarray(Image.fromarray(frame.astype(np.int32)).resize((size, size), Image.NEAREST))
    return dense_ids(small, np.asarray(ids))


def located_maps(grid: np.ndarray, mask: np.ndarray, ids: np.ndarray, alone: np.ndarray, protein: np.ndarray,
                 fit: str) -> np.ndarray:
    """(classes, S, S) float32 located maps (module docstring) of one image: ``grid`` (classes, h, w) its class
    maps, ``mask`` its cells at the image's size, ``ids`` (n,) and ``alone`` (n, classes) each cell's
    probabilities alone (NaN: not shown alone), ``protein`` (S, S) the cached field's protein channel."""
    protein = np.asarray(protein, np.float32)
    size = protein.shape[-1]
    if protein.shape != (size, size):
        raise ValueError(f"the protein channel must be the cached square field, got shape {protein.shape}")
    grid = np.clip(np.asarray(grid, np.float32), 0, None)
    dense = cells_at(mask, ids, fit, size)
    ratios = np.vstack([np.zeros((1, grid.shape[0])), alone_ratios(alone)])  # row 0: off the cells
    out = np.empty((grid.shape[0], size, size), np.float32)
    for c, plane in enumerate(grid):
        peak = plane.max()
        cam = upsample(plane / peak, (size, size)) if peak > 0 else np.ones((size, size))
        out[c] = cam * ratios[dense, c] * protein
    return out

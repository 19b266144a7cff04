"""The model's frame and the image's: where a square class map lies over a field of any shape.

The cache makes every field square (``data.fit``, ``hpa.data.images.square``): ``pad`` centres
it in black, ``crop`` keeps its centre, ``stretch`` resizes it. A class map covers that square,
so before a map meets a cell mask (image pixels), the mask is brought into the same square
(``model_frame``: padded, cropped, or left as it is, since a stretched map is simply upsampled
to the field's own height and width), or the map's peak is taken back to image pixels
(``peak_in_image``). Cells a crop cut away have no map at all; callers treat them as unseen.
"""

from __future__ import annotations

import numpy as np

from hpa.data.images import FITS, square

SQUARE = "square"  # the cache index's fit of a field that was square already


def bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with half-pixel centres (edges clamped)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    t = src - i0
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), i0), 1 - t)
    np.add.at(out, (np.arange(n_out), np.minimum(i0 + 1, n_in - 1)), t)
    return out


def upsample(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2-D map brought to ``shape`` (height, width) by bilinear interpolation."""
    grid = np.asarray(grid, float)
    if grid.shape == tuple(shape):
        return grid
    return bilinear_matrix(shape[0], grid.shape[0]) @ grid @ bilinear_matrix(shape[1], grid.shape[1]).T


def _check(fit: str) -> None:
    if fit not in (*FITS, SQUARE):
        raise ValueError(f"fit {fit!r}: one of {', '.join((*FITS, SQUARE))} (the cache index's fit column)")


def model_frame(mask: np.ndarray, fit: str) -> np.ndarray:
    """``mask`` (H, W) as the square the model saw (stretched fields keep their shape: a map
    upsampled to (H, W) is already where a stretched field's pixels were)."""
    _check(fit)
    return mask if fit in (SQUARE, "stretch") else square(mask, fit)


def _offsets(shape: tuple[int, int], fit: str) -> tuple[int, int, int]:
    """(side, top, left): the square's side and where the image's pixel (0, 0) lies in it."""
    h, w = shape
    if fit == "pad":
        side = max(h, w)
        return side, (side - h) // 2, (side - w) // 2
    side = min(h, w)  # a crop's square starts inside the image: as square() cuts it
    return side, -((h - side) // 2), -((w - side) // 2)


def peak_in_image(grid: np.ndarray, shape: tuple[int, int], fit: str) -> tuple[int, int] | None:
    """The image pixel (row, column) under the centre of the map's highest grid cell (the first if
    tied), or None where that centre is off the image (in a pad's black border)."""
    _check(fit)
    grid = np.asarray(grid, float)
    gh, gw = grid.shape
    i, j = np.unravel_index(np.argmax(grid), grid.shape)
    h, w = shape
    if fit in (SQUARE, "stretch") or h == w:
        return int((i + 0.5) * h / gh), int((j + 0.5) * w / gw)
    side, top, left = _offsets(shape, fit)
    row, col = int((i + 0.5) * side / gh) - top, int((j + 0.5) * side / gw) - left
    return (row, col) if 0 <= row < h and 0 <= col < w else None


def native_map(grid: np.ndarray, shape: tuple[int, int], fit: str) -> np.ndarray:
    """A map (h, w) at image pixels (H, W), bilinear; zero where a crop saw nothing. For pictures
    (the gallery); per-cell scores never build it (``hpa.cells.scores`` pools on the grid)."""
    _check(fit)
    h, w = shape
    if fit in (SQUARE, "stretch") or h == w:
        return upsample(grid, (h, w))
    side, top, left = _offsets(shape, fit)
    framed = upsample(grid, (side, side))
    if fit == "pad":
        return framed[top : top + h, left : left + w]
    out = np.zeros((h, w))
    out[-top : -top + side, -left : -left + side] = framed
    return out

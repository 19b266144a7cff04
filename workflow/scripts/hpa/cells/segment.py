"""The embedded cell segmentation: nuclei from the nuclear stain, cells grown from them.

No weights to download: classical steps from scikit-image, each length a multiple of the
nuclear radius estimated on the image itself, so the same settings serve a 64 px demo field
and a 2048 px atlas image.

1. Nuclei: smooth the nuclear plane, Otsu threshold, fill holes (nucleoli stain darker),
   drop debris; estimate the nuclear radius from the median object; split touching nuclei by
   the watershed of their distance transform from its peaks (``peak_local_max``).
2. Cells: smooth the mean of the cell-body planes (for the HPA stains microtubules and ER),
   take its Otsu foreground (and the nuclei), grow the nuclei over it by a seeded watershed
   of the inverted body image, so that neighbours part where the stain is dimmest.
   Foreground pieces that hold no nucleus (cells whose nucleus lies outside the field) become
   cells of their own when large enough.

Which plane is which is the caller's choice (by channel name); functions here take planes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label as connected
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from hpa.cells.masks import border_ids


@dataclass(frozen=True)
class Settings:
    """Lengths are multiples of the estimated nuclear radius; areas of the median nucleus's."""

    nucleus_smoothing: float = 0.1  # Gaussian sigma for the nuclear plane
    min_nucleus: float = 0.15  # smaller objects of the nuclear plane are debris
    split_distance: float = 0.7  # nearer distance-transform peaks belong to one nucleus
    body_smoothing: float = 0.25  # Gaussian sigma for the cell-body image
    min_cell: float = 0.5  # smaller nucleus-free foreground pieces are dropped, not cells
    cell_reach: float = 2.5  # foreground farther from every nucleus belongs to a cell of its own
    compactness: float = 0.0  # watershed compactness (0: follow the stain only)
    own_reach: float = 0.5  # every cell owns the foreground this near its nucleus before the stain decides


@dataclass
class Segmentation:
    """``cells`` and ``nuclei`` are int32 label images; nucleus k lies in cell k (cells may lack one)."""

    cells: np.ndarray
    nuclei: np.ndarray
    nucleus_radius: float  # px, as estimated


def _scaled(plane) -> np.ndarray:
    """A plane as float in [0, 1] by its own range (any bit depth)."""
    p = np.asarray(plane, np.float32)
    lo, hi = float(p.min()), float(p.max())
    return (p - lo) / (hi - lo) if hi > lo else np.zeros_like(p)


def _foreground(image: np.ndarray) -> np.ndarray:
    return image > threshold_otsu(image) if image.max() > image.min() else np.zeros(image.shape, bool)


def nucleus_radius(nucleus_plane: np.ndarray) -> float:
    """Median radius (px) of the objects of a lightly smoothed Otsu foreground of the nuclear plane."""
    image = gaussian(_scaled(nucleus_plane), sigma=1.0)
    objects = connected(ndi.binary_fill_holes(_foreground(image)))
    areas = np.bincount(objects.ravel())[1:]
    areas = areas[areas >= 4]  # a few noisy pixels are no nucleus
    return float(np.sqrt(np.median(areas) / np.pi)) if len(areas) else max(2.0, min(image.shape) / 30)


def segment_nuclei(nucleus_plane: np.ndarray, settings: Settings = Settings(),
                   radius: float | None = None) -> tuple[np.ndarray, float]:
    """Nuclei as an int32 label image, and the nuclear radius (px) the lengths were scaled by."""
    r = nucleus_radius(nucleus_plane) if radius is None else float(radius)
    image = gaussian(_scaled(nucleus_plane), sigma=max(0.5, settings.nucleus_smoothing * r))
    mask = ndi.binary_fill_holes(_foreground(image))
    objects = connected(mask)
    areas = np.bincount(objects.ravel())
    mask &= areas[objects] >= settings.min_nucleus * np.pi * r**2
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=max(1, round(settings.split_distance * r)),
                           threshold_abs=0.3 * r, labels=connected(mask), exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = watershed(-distance, markers, mask=mask)
    return relabel_sequential(nuclei)[0].astype(np.int32), r


def _seeds(nuclei: np.ndarray, foreground: np.ndarray, radius: float, settings: Settings) -> np.ndarray:
    """The nuclei, and a seed for each piece of foreground farther from every nucleus than a cell
    reaches: a cell whose nucleus lies outside the field (or was missed) grows from there."""
    far = foreground & (ndi.distance_transform_edt(nuclei == 0) > settings.cell_reach * radius)
    pieces = connected(far)
    areas = np.bincount(pieces.ravel())
    pieces[areas[pieces] < settings.min_cell * np.pi * radius**2] = 0
    pieces = relabel_sequential(pieces)[0]
    return np.where(pieces > 0, pieces + nuclei.max(), nuclei).astype(np.int32)


def grow_cells(nuclei: np.ndarray, body_planes, radius: float, settings: Settings = Settings()) -> np.ndarray:
    """Cells grown from ``nuclei`` over the mean of ``body_planes`` (each scaled to [0, 1] first)."""
    planes = [_scaled(p) for p in body_planes]
    if not planes:
        raise ValueError("grow_cells needs at least one cell-body plane")
    body = gaussian(np.mean(planes, axis=0), sigma=max(0.5, settings.body_smoothing * radius))
    foreground = _foreground(body) | (nuclei > 0)
    # Cell-body stains are often dim over the nucleus: raise the nuclei to the top, or the flood
    # from a neighbour's cytoplasm reaches a cell's own before its nucleus does.
    relief = np.where(nuclei > 0, body.max(), body)
    # One seed per nucleus, grown a little first (neighbours part midway): a dim ring round a nucleus
    # is its own cell's, not flooded from a brighter neighbour, so no cell is left as a bare nucleus.
    seeds = _seeds(nuclei, foreground, radius, settings)
    own = expand_labels(nuclei, distance=settings.own_reach * radius) * foreground
    seeds = np.where((seeds == 0) & (own > 0), own, seeds)
    cells = watershed(-relief, seeds, mask=foreground, compactness=settings.compactness)
    # Foreground not reached from a nucleus: cells cut by the border whose nucleus is outside.
    orphans = connected(foreground & (cells == 0))
    areas = np.bincount(orphans.ravel())
    orphans[areas[orphans] < settings.min_cell * np.pi * radius**2] = 0
    n = int(nuclei.max())
    cells = np.where(orphans > 0, orphans + n, cells)
    cells = relabel_sequential(cells)[0] if orphans.any() else cells
    # A cell is the union of its grown body and its nucleus, without holes.
    cells = np.where(nuclei > 0, nuclei, cells)
    return fill_holes(cells.astype(np.int32))


def fill_holes(cells: np.ndarray) -> np.ndarray:
    """Background wholly enclosed by one cell given to that cell (a dim spot of its body is no gap)."""
    out = cells.copy()
    for k, box in enumerate(ndi.find_objects(cells), start=1):
        if box is not None:
            inside = ndi.binary_fill_holes(cells[box] == k) & (cells[box] == 0)
            out[box][inside] = k
    return out


def image_flags(cells: np.ndarray, nuclei: np.ndarray | None = None) -> dict[str, int]:
    """What makes a mask look wrong: cells no bigger than their nucleus (nucleus k in cell k; None:
    not known, -1), cells with a hole of background, and cells cut by the image's border."""
    n = int(cells.max(initial=0))
    holey = sum(1 for k, box in enumerate(ndi.find_objects(cells), start=1) if box is not None
                and (ndi.binary_fill_holes(cells[box] == k) & (cells[box] == 0)).any())
    small = -1
    if nuclei is not None:
        m = int(nuclei.max(initial=0))
        cell_area = np.bincount(cells.ravel(), minlength=max(n, m) + 1)[1:m + 1]
        nucleus_area = np.bincount(nuclei.ravel(), minlength=m + 1)[1:]
        small = int(((cell_area <= nucleus_area) & (nucleus_area > 0)).sum())
    return {"small_cells": small, "holey_cells": holey, "border_cells": len(border_ids(cells))}


def segment(nucleus_plane: np.ndarray, body_planes, settings: Settings = Settings()) -> Segmentation:
    """Nuclei, then cells grown from them; see the module docstring."""
    nuclei, r = segment_nuclei(nucleus_plane, settings)
    return Segmentation(grow_cells(nuclei, body_planes, r, settings), nuclei, r)


# Baselines, so that a segmentation's score means something.
def disk_cells(nuclei: np.ndarray, radius: float, reach: float = 1.5) -> np.ndarray:
    """Each nucleus grown by ``reach`` nuclear radii regardless of the stains (neighbours split midway)."""
    return expand_labels(nuclei, distance=reach * radius).astype(np.int32)


def one_cell(body_planes, nuclei: np.ndarray, radius: float, settings: Settings = Settings()) -> np.ndarray:
    """The whole foreground as a single cell."""
    body = gaussian(np.mean([_scaled(p) for p in body_planes], axis=0), sigma=max(0.5, settings.body_smoothing * radius))
    return (_foreground(body) | (nuclei > 0)).astype(np.int32)

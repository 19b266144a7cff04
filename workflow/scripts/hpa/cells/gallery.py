"""The gallery: per class, the test images that show where an ensemble sees it, as pictures.

Each row is one image: the protein channel alone (``channels.rgb``'s green), contrast-stretched
per field between two percentiles (``STRETCH``, stated on the page: a faint pattern recorded at a
quarter of the range is seen as it is), the colour composite (each channel of ``channels.rgb`` in
its colour, the others in yellow, as the atlas shows its ER), the class map over a dimmed
composite ("no map" written on it where the map is empty, rather than the picture again),
and the cells with their outlines (the cells labelled with the class in colour, with their
scores). Rows are the class's most confident true positives, its most confident false
positives and its least confident false negatives where test labels exist; otherwise its
most confident predictions. Drawn with PIL, not matplotlib: a few milliseconds a panel,
so a gallery of every class of every ensemble costs seconds.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.segmentation import find_boundaries

from hpa.cells.frames import native_map

PANEL = 192  # px, each panel's longer side
STRIP = 18  # px, the caption above each row
KINDS = {"tp": "true positive", "fp": "false positive", "fn": "false negative", "top": "predicted"}
# matplotlib's inferno at five stops, interpolated: dark where the map is low, yellow at its peak
# (without matplotlib, so that predict_new's panels need only the inference environment).
_STOPS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], float)
HEAT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, 5), _STOPS[:, k]) for k in range(3)],
                axis=1).astype(np.uint8)
LABELLED = (0, 255, 255)  # outline of a cell labelled with the class
OTHER = (150, 150, 150)
FONT = ImageFont.load_default(size=12)
STRETCH = (1.0, 99.5)  # percentiles of the protein panel's field mapped to black and white


def protein_channel(vocab) -> str:
    """The channel that shows the protein: the one ``channels.rgb`` draws in green (the atlas's own)."""
    return vocab.rgb.get("green") or vocab.channels[0]


def protein_panel(plane: np.ndarray, stretch: tuple[float, float] = STRETCH) -> np.ndarray:
    """(H, W, 3) uint8 grey: the protein plane stretched between its own ``stretch`` percentiles."""
    lo, hi = np.percentile(plane, stretch)
    scaled = (np.asarray(plane, np.float32) - lo) / (hi - lo) if hi > lo else np.zeros(plane.shape, np.float32)
    return np.repeat((np.clip(scaled, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def composite(planes: dict[str, np.ndarray], rgb: dict[str, str]) -> np.ndarray:
    """(H, W, 3) uint8: channel ``rgb[colour]`` in that colour, every other channel in yellow."""
    first = next(iter(planes.values()))
    out = np.zeros((*first.shape, 3), np.float32)
    placed = {name: "rgb".index(colour[0]) for colour, name in rgb.items()}
    for name, plane in planes.items():
        if name in placed:
            out[..., placed[name]] += plane
        else:
            out[..., :2] += 0.5 * plane[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def pick(probs: np.ndarray, predicted: np.ndarray, truth: np.ndarray | None, k: int) -> list[tuple[str, int]]:
    """(kind, row) for one class: ``probs``, ``predicted`` (n,), ``truth`` (n,) bool or None; ``k`` per kind."""
    def top(rows, descending=True):
        order = rows[np.argsort(-probs[rows] if descending else probs[rows], kind="stable")]
        return order[:k].tolist()

    if truth is None:
        return [("top", r) for r in top(np.flatnonzero(predicted))]
    return ([("tp", r) for r in top(np.flatnonzero(predicted & truth))]
            + [("fp", r) for r in top(np.flatnonzero(predicted & ~truth))]
            + [("fn", r) for r in top(np.flatnonzero(~predicted & truth), descending=False)])


def _fit(image: np.ndarray) -> Image.Image:
    h, w = image.shape[:2]
    scale = PANEL / max(h, w)
    return Image.fromarray(image).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                         Image.NEAREST if scale >= 1 else Image.BILINEAR)


def map_panel(colour: np.ndarray, grid: np.ndarray, fit: str) -> np.ndarray | None:
    """The map over a dimmed composite; None where the map carries nothing (zero everywhere)."""
    heat = np.clip(native_map(grid, colour.shape[:2], fit), 0, None)
    if not heat.max() > 0:
        return None
    heat = heat / heat.max() if heat.max() > 0 else heat
    alpha = heat[..., None]
    shaded = HEAT[(heat * 255).astype(np.uint8)].astype(np.float32)
    return (alpha * shaded + (1 - alpha) * 0.4 * colour).astype(np.uint8)


def cells_panel(colour: np.ndarray, mask: np.ndarray, labelled: set[int]) -> np.ndarray:
    out = colour.copy()
    edges = find_boundaries(mask, mode="inner")
    is_labelled = np.isin(mask, list(labelled)) if labelled else np.zeros(mask.shape, bool)
    out[edges & ~is_labelled] = OTHER
    out[edges & is_labelled] = LABELLED
    return out


def _no_map(like: Image.Image) -> Image.Image:
    blank = Image.new("RGB", like.size, (35, 35, 35))
    ImageDraw.Draw(blank).text((6, like.height // 2 - 14), "no map:\nthe class map is\nzero everywhere",
                               fill=(230, 230, 230), font=FONT)
    return blank


def row_image(protein, colour, grid, fit, mask, cell_scores: dict[int, float], labelled: set[int],
              caption: str) -> Image.Image:
    """One image's four panels under its caption (``protein``: protein_panel's); labelled cells carry their
    score (in %)."""
    heat = map_panel(colour, grid, fit)
    panels = [_fit(protein), _fit(colour)]
    panels += [_no_map(panels[1]) if heat is None else _fit(heat), _fit(cells_panel(colour, mask, labelled))]
    width, height = sum(p.width for p in panels), panels[0].height
    row = Image.new("RGB", (width, height + STRIP))
    draw = ImageDraw.Draw(row)
    draw.text((4, 2), caption, fill=(255, 255, 255), font=FONT)
    x = 0
    for p in panels:
        row.paste(p, (x, STRIP))
        x += p.width
    scale = panels[-1].width / mask.shape[1]
    offset = width - panels[-1].width
    for cell, score in cell_scores.items():
        if cell in labelled:
            ys, xs = np.nonzero(mask == cell)
            draw.text((offset + xs.mean() * scale - 6, STRIP + ys.mean() * scale - 6), f"{round(100 * score)}",
                      fill=(255, 255, 0), font=FONT)
    return row


def page(title: str, rows: list[Image.Image]) -> Image.Image:
    """Rows stacked under a title ("no image" where the class has none)."""
    heads = [f"protein, {STRETCH[0]:g}-{STRETCH[1]:g} percentiles", "composite", "class map",
             "cells (labelled: colour, score %)"]
    width = max([r.width for r in rows], default=len(heads) * PANEL)
    page = Image.new("RGB", (width, 2 * STRIP + sum(r.height for r in rows) + (STRIP if not rows else 0)), (20, 20, 20))
    draw = ImageDraw.Draw(page)
    draw.text((4, 2), title, fill=(255, 255, 255), font=FONT)
    for k, head in enumerate(heads):
        draw.text((4 + k * width // len(heads), STRIP + 2), head, fill=(200, 200, 200), font=FONT)
    y = 2 * STRIP
    for r in rows:
        page.paste(r, (0, y))
        y += r.height
    if not rows:
        draw.text((4, y + 2), "no test image to show", fill=(200, 200, 200), font=FONT)
    return page


def file_name(index: int, name: str) -> str:
    """``07_Golgi_apparatus.jpg``: sorted by class number, safe on every file system."""
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_') or 'class'}.jpg"

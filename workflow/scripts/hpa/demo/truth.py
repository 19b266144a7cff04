"""What the demo knows about a field and a classifier cannot see: its cells, their labels, where each label is.

``render_field(..., truth=True)`` returns a ``FieldTruth`` beside the image, made from the
same scene and green layers without drawing another random number, so the image is the
same byte for byte. ``write_truth`` keeps a test image's truth aside, as ``test_labels.csv``
is kept, for scoring only (``hpa.cells.truth`` reads it):

- ``test_cells/{Id}.png``: the cells as a 16-bit label image (0 = background, cells 1..n);
- ``test_regions/{Id}.npz``: per label, the pixels where its green was drawn (bit-packed);
- rows of ``test_cells.csv`` (``write_cells_table``): Id, cell, Target (canonical: "0 16").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.files import atomic_path, write_csv

# A label's region: the pixels of its expressing cells where its pattern reaches this share of
# the pattern's peak there, before the cell's own gain (a dim cell's pattern is still there).
REGION_FRACTION = 0.1


@dataclass
class FieldTruth:
    """One field's truth. ``labels[k]`` are the labels of cell k + 1 (ascending 0-based indices)."""

    cells: np.ndarray  # int32 (size, size): 0 = background, 1..n the cells visible in the field
    labels: list[tuple[int, ...]]
    regions: dict[int, np.ndarray]  # label -> bool (size, size)

    @property
    def n_cells(self) -> int:
        return len(self.labels)


def field_truth(sc, drawn: dict, fraction: float = REGION_FRACTION) -> FieldTruth:
    """The truth of a rendered Scene ``sc``; ``drawn``: label -> (pattern, per-cell gains), from _draw_green."""
    visible = np.flatnonzero(sc.area > 0)
    number = np.zeros(len(sc.cells) + 1, np.int32)  # indexed by Scene cell_id + 1 (-1 = background)
    number[visible + 1] = np.arange(1, len(visible) + 1)
    cells = number[sc.cell_id.astype(np.int64) + 1]
    labels = [tuple(sorted(k for k, (_, gains) in drawn.items() if gains[i] > 0)) for i in visible]
    regions = {}
    for k, (pattern, gains) in sorted(drawn.items()):
        shown = np.append(gains > 0, False)[sc.cell_id]
        peak = float(pattern[shown].max()) if shown.any() else 0.0
        regions[k] = shown & (pattern > fraction * peak) if peak > 0 else np.zeros_like(shown)
    return FieldTruth(cells, labels, regions)


def cropped(truth: FieldTruth, box: tuple[slice, slice], classes: dict[int, int]) -> FieldTruth:
    """The truth of the window ``box`` of a field, cells renumbered 1..n in order, labels translated by
    ``classes`` (atlas index -> the dataset's; a label without one, e.g. Negative's haze, is dropped)."""
    cells = truth.cells[box]
    visible = np.unique(cells[cells > 0])
    number = np.zeros(truth.n_cells + 1, np.int32)
    number[visible] = np.arange(1, len(visible) + 1)
    labels = [tuple(sorted(classes[a] for a in truth.labels[v - 1] if a in classes)) for v in visible]
    regions = {classes[a]: region[box] for a, region in truth.regions.items() if a in classes}
    return FieldTruth(number[cells], labels, regions)


def cell_rows(image_id: str, truth: FieldTruth) -> list[dict]:
    """Rows of ``test_cells.csv`` for one image: Id, cell, Target (a cell showing no label gets "")."""
    return [{"Id": image_id, "cell": k + 1, "Target": " ".join(map(str, labels))}
            for k, labels in enumerate(truth.labels)]


def write_truth(out_dir, image_id: str, truth: FieldTruth) -> list[dict]:
    """Write one image's mask and regions under ``out_dir``; return its rows of ``test_cells.csv``."""
    out_dir = Path(out_dir)
    if truth.n_cells > np.iinfo(np.uint16).max:
        raise ValueError(f"{image_id}: {truth.n_cells} cells do not fit a 16-bit label image")
    with atomic_path(out_dir / "test_cells" / f"{image_id}.png") as tmp:
        Image.fromarray(truth.cells.astype(np.uint16)).save(tmp, format="PNG", compress_level=1)
    order = sorted(truth.regions)
    bits = np.packbits(np.stack([truth.regions[k] for k in order]).reshape(len(order), -1), axis=1) \
        if order else np.zeros((0, 0), np.uint8)
    with atomic_path(out_dir / "test_regions" / f"{image_id}.npz") as tmp:
        np.savez_compressed(tmp, labels=np.array(order, np.int16), bits=bits,
                            shape=np.array(truth.cells.shape, np.int32))
    return cell_rows(image_id, truth)


def write_cells_table(rows: list[dict], path) -> None:
    """``test_cells.csv``, sorted by Id and cell (workers return rows in any order)."""
    table = pd.DataFrame(rows, columns=["Id", "cell", "Target"]).sort_values(["Id", "cell"], kind="stable")
    write_csv(table, path)

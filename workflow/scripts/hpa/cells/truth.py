"""Reading a test set's per-cell truth (the demo writes it: ``hpa.demo.truth``; a lab with annotated
cells can lay its own out the same way), for scoring only:

- ``test_cells.csv``: Id, cell, Target (canonical indices, "" for a cell showing no class);
- ``test_cells/{Id}.png``: each image's true cells as a label image (0 = background);
- ``test_regions/{Id}.npz`` (optional): per class, the pixels where it shows (bit-packed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hpa.files import InputError
from hpa.tables import parse_canonical


def read_cell_labels(path, n_classes: int) -> dict[str, dict[int, tuple[int, ...]]]:
    """Id -> {cell: its classes}."""
    table = pd.read_csv(path, dtype={"Id": str, "Target": str}, keep_default_na=False)
    missing = {"Id", "cell", "Target"} - set(table.columns)
    if missing:
        raise InputError(f"{path}: columns {sorted(missing)} missing; a cell truth table has Id, cell, Target")
    out: dict[str, dict[int, tuple[int, ...]]] = {}
    for k, row in enumerate(table.itertuples(index=False), start=2):
        labels = parse_canonical(row.Target, n_classes, where=f"{path} line {k}") if row.Target.strip() else []
        out.setdefault(row.Id, {})[int(row.cell)] = tuple(labels)
    return out


def read_regions(path) -> dict[int, np.ndarray]:
    """class -> bool mask, from a ``test_regions/{Id}.npz``."""
    with np.load(path) as z:
        shape, n = tuple(z["shape"]), int(np.prod(z["shape"]))
        return {int(k): np.unpackbits(row, count=n).astype(bool).reshape(shape)
                for k, row in zip(z["labels"], z["bits"])}


def regions_of(folder, image_id: str) -> dict[int, np.ndarray]:
    """An image's regions, or {} where the truth has none for it."""
    path = Path(folder) / "test_regions" / f"{image_id}.npz"
    return read_regions(path) if path.is_file() else {}

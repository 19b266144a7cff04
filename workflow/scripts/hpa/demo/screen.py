"""Stand-ins for datasets that are not the 2018 competition's: a lab's screen, the 2021 layout.

Each is drawn differently from the demo, so that what the pipeline learns on them is not
the demo's recipe replayed: its own classes (a subset of the atlas's locations, or the
2021 task's 19 with Negative) under its own names and frequencies, its own stains (three,
five, or one, in its own order, one of them possibly uninformative), rectangular fields,
and a camera that writes 12 bits into 16-bit files. The cells and patterns are the demo
renderer's (hpa.demo.render); everything around them is the lab's.

``make_screen`` writes a sample sheet (``samples.tsv``: Id, split, Target, one column per
stain) over per-plate folders of 16-bit TIFFs, with the test rows labelled and the test fields'
cells kept aside as the demo keeps them (``test_cells.csv``, ``test_cells/``, ``test_regions/``:
hpa.demo.truth; ``cells.truth`` pointed at the folder scores the segmentation and the cell labels); ``layout="kaggle"``
writes a Kaggle-style folder instead (train.csv with the given id and target columns,
sample_submission.csv, train/ and test/ with ``{Id}_{stain}.png``, test_labels.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.classes import CHANNELS
from hpa.demo.dataset import label_set_table
from hpa.demo.render import render_field
from hpa.demo.truth import FieldTruth, cropped, write_cells_table, write_truth
from hpa.files import atomic_path, write_csv
from hpa.parallel import run_tasks

# The worked example of README and docs/your-images.md: ten locations under a lab's names, each drawn as the atlas
# class of the index given.
LAB_CLASSES = {
    "nucleus": 0, "nucleoli": 2, "speckles": 4, "ER": 6, "Golgi": 7,
    "actin": 12, "microtubules": 14, "centrosome": 19, "plasma membrane": 21, "mitochondria": 23,
}
# The 2021 single-cell competition's 19 image-level classes, each drawn as the 2018 class
# closest to it; 18, Negative, has no class of its own (only unspecific staining).
HPA2021_CLASSES = {
    "Nucleoplasm": 0, "Nuclear membrane": 1, "Nucleoli": 2, "Nucleoli fibrillar center": 3,
    "Nuclear speckles": 4, "Nuclear bodies": 5, "Endoplasmic reticulum": 6, "Golgi apparatus": 7,
    "Intermediate filaments": 11, "Actin filaments": 12, "Microtubules": 14, "Mitotic spindle": 17,
    "Centrosome": 19, "Plasma membrane": 21, "Mitochondria": 23, "Aggresome": 24, "Cytosol": 25,
    "Vesicles and punctate cytosolic patterns": 9, "Negative": None,
}
# Stain name -> what it shows: one of the renderer's planes, or "cells", a phase-contrast-like
# channel of cell bodies that says nothing about where the protein is.
LAB_STAINS = {"dapi": "blue", "protein": "green", "tubulin": "red"}


def draw_label_sets(n: int, classes: dict, rng: np.random.Generator, min_per_class: int = 3,
                    negative_fraction: float = 0.05) -> list[tuple[int, ...]]:
    """``n`` label sets over ``classes`` (name -> atlas index or None for Negative), as indices into it.

    The atlas's real label sets (their frequencies, their co-occurrence) restricted to
    the chosen locations; sets with none of them are drawn again. Negative, where the
    vocabulary has it, stands alone in ``negative_fraction`` of the images.
    """
    table = label_set_table()
    atlas_sets = [tuple(int(k) for k in s.split()) for s in table["labels"]]
    to_ours = {atlas: k for k, atlas in enumerate(classes.values()) if atlas is not None}
    negative = [k for k, atlas in enumerate(classes.values()) if atlas is None]
    restricted = [tuple(sorted({to_ours[a] for a in s if a in to_ours})) for s in atlas_sets]
    weights = table["count"].to_numpy(float) * np.array([bool(s) for s in restricted])
    picks = [restricted[i] for i in rng.choice(len(restricted), n, p=weights / weights.sum())]
    if negative:
        picks = [(negative[0],) if rng.uniform() < negative_fraction else s for s in picks]
    # A few guaranteed images per class, as the demo does for Rods & rings.
    slots = rng.permutation(n)
    for k in range(len(classes)):
        holders = sorted({s for s in restricted if k in s}) or [(k,)]
        for slot in slots[k * min_per_class:(k + 1) * min_per_class]:
            picks[slot] = holders[rng.integers(len(holders))]
    return picks


def _planes(labels, atlas_of, size, seed, stains) -> tuple[np.ndarray, FieldTruth]:
    """The stains of one square field as float planes on the 0..255 scale, and its cells' truth
    (in atlas indices; drawing it changes no pixel)."""
    rng = np.random.default_rng(seed)
    atlas = {atlas_of[k] for k in labels if atlas_of[k] is not None}
    field, truth = render_field(atlas, size, rng, allow_empty=True, truth=True)
    field = field.astype(np.float32)
    by_name = dict(zip(CHANNELS, field))
    cells = np.maximum.reduce([by_name["red"], by_name["blue"], by_name["yellow"]])
    by_name["cells"] = 40 + 0.5 * cells + rng.normal(0, 6, cells.shape)
    return np.stack([by_name[source] for source in stains.values()]), truth


def _to_12_bit(planes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a 12-bit camera writes into a 16-bit file: 16 times the scale, a dark offset, dither."""
    counts = planes * 16 + rng.uniform(0, 16, planes.shape) + rng.uniform(80, 200)
    return np.clip(np.rint(counts), 0, 4095).astype(np.uint16)


def _write_field(task) -> list[dict]:
    """Write one field's stains; for a test field (``truth_dir`` set) also its cells' truth, as the
    demo keeps it (hpa.demo.truth, classes as the dataset's indices), whose rows it returns."""
    image_id, labels, atlas_of, shape, seed, stains, paths, truth_dir = task
    height, width = shape
    rng = np.random.default_rng(seed + 1)
    side = max(height, width)
    planes, truth = _planes(labels, atlas_of, side, seed, stains)
    top, left = rng.integers(0, side - height + 1), rng.integers(0, side - width + 1)
    box = (slice(top, top + height), slice(left, left + width))
    field = _to_12_bit(planes[(slice(None), *box)], rng)
    for plane, path in zip(field, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Image.fromarray(plane).save(tmp, format="TIFF" if path.suffix == ".tif" else "PNG")
    if truth_dir is None:
        return []
    ours = {atlas: k for k, atlas in enumerate(atlas_of) if atlas is not None}
    return write_truth(truth_dir, image_id, cropped(truth, box, ours))


def _spell(labels, names, spelling: str, separator: str) -> str:
    return separator.join(names[k] if spelling == "names" else str(k) for k in labels)


def make_screen(out_dir, *, n_train: int = 400, n_test: int = 120, shape=(96, 128), classes: dict | None = None,
                stains: dict | None = None, seed: int = 0, spelling: str = "names", separator: str = ";",
                layout: str = "samples", id_column: str = "Id", target_column: str = "Target",
                sizes: tuple | None = None, min_per_class: int = 3, workers: int = 1) -> Path:
    """Write a dataset (see the module docstring); return its sample sheet or its folder.

    ``shape``: (height, width) of every field, or ``sizes``: a tuple of square sides drawn per
    image (the 2021 images come at several sizes). ``classes``: name -> atlas class index (None:
    Negative); ``stains``: name -> renderer plane ("red", "green", "blue", "yellow", "cells").
    """
    out_dir = Path(out_dir)
    classes = LAB_CLASSES if classes is None else classes
    stains = LAB_STAINS if stains is None else stains
    names, atlas_of = list(classes), list(classes.values())
    rng = np.random.default_rng(seed)
    rows, tasks = [], []
    for split, n in (("train", n_train), ("test", n_test)):
        for k, labels in enumerate(draw_label_sets(n, classes, rng, min_per_class)):
            image_id = f"{split[:2]}{k:04d}-p{k % 4 + 1}"
            if sizes is not None:
                side = int(rng.choice(sizes))
                field_shape = (side, side)
            else:
                field_shape = tuple(shape)
            if layout == "samples":
                paths = [out_dir / f"plate{k % 4 + 1}" / f"{image_id}-{stain}.tif" for stain in stains]
            else:
                paths = [out_dir / split / f"{image_id}_{stain}.png" for stain in stains]
            rows.append({"Id": image_id, "split": split, "Target": _spell(labels, names, spelling, separator),
                         **{stain: str(p.relative_to(out_dir)) for stain, p in zip(stains, paths)}})
            truth_dir = out_dir if split == "test" else None  # kept aside, for scoring only
            tasks.append((image_id, labels, atlas_of, field_shape, int(rng.integers(0, 2**62)), stains, paths,
                          truth_dir))
    cells = run_tasks(_write_field, tasks, workers, chunksize=8)
    write_cells_table([row for rows in cells for row in rows], out_dir / "test_cells.csv")
    table = pd.DataFrame(rows)
    if layout == "samples":
        sheet = out_dir / "samples.tsv"
        with atomic_path(sheet) as tmp:
            table.to_csv(tmp, sep="\t", index=False)
        return sheet
    columns = {"Id": id_column, "Target": target_column}
    test = table[table["split"] == "test"]
    write_csv(test[["Id", "Target"]].rename(columns=columns), out_dir / "test_labels.csv")
    write_csv(test[["Id"]].rename(columns=columns).assign(Predicted=""), out_dir / "sample_submission.csv")
    write_csv(table.loc[table["split"] == "train", ["Id", "Target"]].rename(columns=columns), out_dir / "train.csv")
    return out_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the README's example lab screen (a sample sheet of "
                                                 "three-stain, ten-class, 12-bit rectangular TIFFs).")
    parser.add_argument("out_dir", nargs="?", default="resources/screen")
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    sheet = make_screen(args.out_dir, n_train=args.n_train, n_test=args.n_test, seed=args.seed, workers=args.workers)
    print(f"wrote {sheet} ({args.n_train} train and {args.n_test} labelled test fields)")


if __name__ == "__main__":
    main()

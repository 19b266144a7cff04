"""The embedded demo dataset: synthetic HPA fields of view in the exact Kaggle layout.

Label sets are drawn from the real competition's label-set frequencies
(``resources/label_sets.csv``, 577 distinct sets counted from the 31,072 rows
of Kaggle's train.csv), so class imbalance and co-occurrence are realistic.
A few images per class are guaranteed so that even Rods & rings (11 of 31,072
real images) exists in a demo of hundreds. Test labels are written aside, for
scoring only.

A share of the fields (``AGREE_SHARE``) have cells that all agree with their image, as most of
the atlas's do: every eligible cell shows each of the image's labels; in the others each cell
shows each label with ``hpa.demo.render.EXPRESS_P``. Which ones is drawn from the image's own
seed apart from its other draws, so the other fields are the same, byte for byte.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.classes import CHANNELS, NUM_CLASSES
from hpa.data.images import channel_path
from hpa.demo.render import render_field
from hpa.demo.truth import write_cells_table, write_truth
from hpa.files import atomic_path, write_csv
from hpa.parallel import run_tasks
from hpa.tables import format_target


def label_set_table() -> pd.DataFrame:
    with resources.files("hpa").joinpath("resources/label_sets.csv").open() as fh:
        return pd.read_csv(fh, dtype={"labels": str})


def sample_label_sets(n: int, rng: np.random.Generator, min_per_class: int = 0) -> list[tuple[int, ...]]:
    """``n`` label sets: ``min_per_class`` drawn among the sets holding each class, the rest by real frequency."""
    table = label_set_table()
    sets = [tuple(int(k) for k in s.split()) for s in table["labels"]]
    weights = table["count"].to_numpy(dtype=float)
    chosen: list[int] = []
    for k in range(NUM_CLASSES):
        holders = np.array([i for i, s in enumerate(sets) if k in s])
        w = weights[holders] / weights[holders].sum()
        chosen.extend(rng.choice(holders, size=min(min_per_class, n), p=w).tolist())
    rng.shuffle(chosen)
    chosen = chosen[:n]
    rest = rng.choice(len(sets), size=n - len(chosen), p=weights / weights.sum())
    picks = np.concatenate([np.asarray(chosen, dtype=int), rest])
    rng.shuffle(picks)
    return [sets[i] for i in picks]


def demo_id(rng: np.random.Generator) -> str:
    """A Kaggle-style Id (UUID1-like, as in the competition)."""
    h = rng.integers(0, 16, size=24)
    hexs = "".join("0123456789abcdef"[d] for d in h)
    return f"{hexs[:8]}-{hexs[8:12]}-11e8-{hexs[12:16]}-ac1f6b6435d0"


AGREE_SHARE = 0.5


def agrees(seed: int) -> bool:
    """Whether the field of this image seed has cells that all agree with it (``AGREE_SHARE`` of them)."""
    return bool(np.random.default_rng([seed, 1]).uniform() < AGREE_SHARE)


def _write_image(task) -> list[dict]:
    """Write one field's PNGs; for a test field (``truth_dir`` set) also its cells' truth, whose
    rows of test_cells.csv it returns. The truth comes from the same scene: the image is the same."""
    image_dir, image_id, labels, size, seed, truth_dir = task
    rng = np.random.default_rng(seed)
    agree = agrees(seed)
    planes, truth = render_field(frozenset(labels), size, rng, truth=True, agree=agree) if truth_dir else (
        render_field(frozenset(labels), size, rng, agree=agree), None)
    for color, plane in zip(CHANNELS, planes):
        with atomic_path(channel_path(image_dir, image_id, color)) as tmp:
            Image.fromarray(plane).save(tmp, format="PNG", compress_level=1)
    return write_truth(truth_dir, image_id, truth) if truth_dir else []


def make_demo(
    out_dir, n_train: int, n_test: int, size: int, seed: int, min_per_class: int = 0, workers: int = 1
) -> None:
    """Write ``train.csv``, ``sample_submission.csv``, ``test_labels.csv``, the PNGs, and each test
    field's cells (``test_cells/``, ``test_regions/``, ``test_cells.csv``: hpa.demo.truth)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    tables, tasks = {}, []
    for split, n in (("train", n_train), ("test", n_test)):
        labels = sample_label_sets(n, rng, min_per_class)
        ids = [demo_id(rng) for _ in range(n)]
        image_seeds = rng.integers(0, 2**63 - 1, size=n)
        tables[split] = pd.DataFrame({"Id": ids, "Target": [format_target(s) for s in labels]})
        truth_dir = out_dir if split == "test" else None  # kept aside, for scoring only
        tasks += [(out_dir / split, i, s, size, int(z), truth_dir) for i, s, z in zip(ids, labels, image_seeds)]
    for split in tables:
        (out_dir / split).mkdir(parents=True, exist_ok=True)
    for folder in ("test_cells", "test_regions"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    cells = run_tasks(_write_image, tasks, workers, chunksize=8)
    write_cells_table([row for rows in cells for row in rows], out_dir / "test_cells.csv")
    test = tables["test"]
    write_csv(test, out_dir / "test_labels.csv")
    write_csv(test[["Id"]].assign(Predicted="0"), out_dir / "sample_submission.csv")
    # train.csv last: its presence means the whole dataset is there.
    write_csv(tables["train"], out_dir / "train.csv")

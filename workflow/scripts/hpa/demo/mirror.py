"""The demo's stand-in for the HPAv18 image server: a folder laid out like it.

``make_mirror`` writes, from the demo dataset and its seed:

- ``images/{folder}/{rest}_{color}.jpg``: colour-tinted JPEGs as the atlas
  serves them (red signal in R, green in G, blue in B, yellow in R and G), at
  ``size`` px, larger than the demo images so the download's resize runs;
- ``list.csv``: ``Id,Target`` like ``HPAv18RBGY_wodpl.csv``, faulty Ids included;
- ``truth.csv``: ``Id,kind,of`` what each Id was made to be, so tests and the
  closing report can check the cleaning against the truth.

Kinds (``SHARES`` of ``n``, at least one each; the rest are ``new``):

- ``new``: a fresh synthetic field, labels from the real label-set frequencies;
- ``copy_external``: a ``new`` image re-encoded with jittered brightness;
- ``copy_train`` / ``copy_test``: a demo train / test image upscaled, jittered
  and re-encoded, with its labels (test copies are the leak); the first train
  copy gets an extra label, a conflict the cleaning must report;
- ``missing_channel``, ``blank_channel``, ``corrupt_channel``: a new field
  with one channel absent, constant, or cut in half.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.classes import CHANNELS, HPA, NUM_CLASSES
from hpa.data.images import channel_files, load_image
from hpa.demo.dataset import sample_label_sets
from hpa.demo.render import render_field
from hpa.files import atomic_path, write_csv
from hpa.parallel import run_tasks
from hpa.tables import format_target, read_labels

SHARES = {"copy_external": 0.06, "copy_train": 0.08, "copy_test": 0.05,
          "missing_channel": 0.03, "blank_channel": 0.02, "corrupt_channel": 0.01}


TINT = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}


def mirror_path(root, image_id: str, color: str) -> Path:
    folder, rest = image_id.split("_", 1)
    return Path(root) / folder / f"{rest}_{color}.jpg"


def tinted_jpeg(plane: np.ndarray, color: str, quality: int) -> bytes:
    rgb = plane[..., None] * np.array(TINT[color], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def hpa_ids(n: int, rng: np.random.Generator) -> list[str]:
    """Distinct Ids shaped like the atlas's: folder_plate_well_field."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        folder, plate, row, col, fov = rng.integers([100, 100, 0, 1, 1], [20000, 2000, 8, 13, 7])
        ids[f"{folder}_{plate}_{'ABCDEFGH'[row]}{col}_{fov}"] = None
    return list(ids)


def jitter(planes: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Rescale to ``size`` and scale each channel's brightness by up to 10%."""
    out = []
    for plane in planes:
        im = Image.fromarray(plane)
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        gain = rng.uniform(0.9, 1.1)
        out.append(np.clip(np.asarray(im, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
    return np.stack(out)


def _labels(target: str) -> frozenset:
    return frozenset(int(k) for k in target.split())


def _planes(task: dict) -> np.ndarray:
    rng = np.random.default_rng(task["seed"])
    kind, size = task["kind"], task["size"]
    if kind == "copy_external":  # the original's field, drawn again from its seed
        original = render_field(_labels(task["Target"]), size, np.random.default_rng(task["of_seed"]))
        return jitter(original, size, rng)
    if kind in ("copy_train", "copy_test"):
        return jitter(load_image(channel_files(task["of_dir"], task["of"], CHANNELS)), size, rng)
    planes = render_field(_labels(task["Target"]), size, rng)
    if kind == "blank_channel":
        planes[rng.integers(4)] = rng.integers(0, 20)
    return planes


def _write(task: dict) -> None:
    planes = _planes(task)
    rng = np.random.default_rng(task["seed"] + 1)
    faulty = CHANNELS[rng.integers(4)]
    for color, plane in zip(CHANNELS, planes):
        if task["kind"] == "missing_channel" and color == faulty:
            continue
        body = tinted_jpeg(plane, color, task["quality"])
        if task["kind"] == "corrupt_channel" and color == faulty:
            body = body[: len(body) // 2]
        with atomic_path(mirror_path(task["root"], task["Id"], color)) as tmp:
            tmp.write_bytes(body)


def plan(n: int, train: pd.DataFrame, test: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Id, kind, labels, seed and original (``of``) of every mirror image, in list order."""
    counts = {k: max(1, round(share * n)) for k, share in SHARES.items()}
    n_new = n - sum(counts.values())
    if n_new < counts["copy_external"]:
        raise ValueError(f"demo.mirror.n={n} is too small for every kind of image; use at least 40")
    ids = hpa_ids(n, rng)
    seeds = rng.integers(0, 2**62, size=n)
    new = pd.DataFrame({"kind": "new", "of": "", "Target": [format_target(s) for s in sample_label_sets(n_new, rng)]})
    parts = [new]
    copied = rng.choice(n_new, counts["copy_external"], replace=False)
    parts.append(pd.DataFrame({"kind": "copy_external", "of": [ids[k] for k in copied],
                               "Target": new["Target"].to_numpy()[copied]}))
    for kind, table in (("copy_train", train), ("copy_test", test)):
        rows = table.iloc[rng.choice(len(table), counts[kind], replace=False)]
        parts.append(pd.DataFrame({"kind": kind, "of": rows["Id"].to_numpy(), "Target": rows["Target"].to_numpy()}))
    for kind in ("missing_channel", "blank_channel", "corrupt_channel"):
        parts.append(pd.DataFrame({"kind": kind, "of": "",
                                   "Target": [format_target(s) for s in sample_label_sets(counts[kind], rng)]}))
    out = pd.concat(parts, ignore_index=True).assign(Id=ids, seed=seeds)
    # One train copy carries an extra label: a conflict the cleaning must report.
    k = out.index[out["kind"].eq("copy_train")][0]
    labels = _labels(out.at[k, "Target"])
    out.at[k, "Target"] = format_target(labels | {min(set(range(NUM_CLASSES)) - labels)})
    return out.iloc[rng.permutation(n)].reset_index(drop=True)


def make_mirror(demo_dir, out_dir, n: int, size: int, seed: int, quality: int = 90, workers: int = 1) -> None:
    """Write the mirror of ``n`` images for the demo dataset in ``demo_dir``."""
    demo_dir, out_dir = Path(demo_dir), Path(out_dir)
    train = read_labels(demo_dir / "train.csv", HPA)
    test = read_labels(demo_dir / "test_labels.csv", HPA)
    table = plan(n, train, test, np.random.default_rng([seed, 18]))
    seed_of = dict(zip(table["Id"], table["seed"]))
    split_of = {**dict.fromkeys(train["Id"], "train"), **dict.fromkeys(test["Id"], "test")}
    tasks = [
        {**row, "size": size, "quality": quality, "root": out_dir / "images",
         "of_seed": int(seed_of.get(row["of"], 0)), "of_dir": demo_dir / split_of.get(row["of"], "")}
        for row in table.to_dict("records")
    ]
    run_tasks(_write, tasks, workers, chunksize=4)
    write_csv(table[["Id", "kind", "of"]], out_dir / "truth.csv")
    # list.csv last: its presence means the whole mirror is there.
    write_csv(table[["Id", "Target"]], out_dir / "list.csv")

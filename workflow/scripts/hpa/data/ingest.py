"""Reading and validating datasets in the Kaggle layout, and the manifest.

A source in Kaggle layout is a folder with ``train.csv`` (``Id,Target``),
``sample_submission.csv`` (``Id,Predicted``) and the per-channel images
``train/{Id}_{color}.png`` and ``test/{Id}_{color}.png`` (or ``.tif``, ``.jpg``:
see ``hpa.data.images``); Kaggle's full-size TIFFs sit in ``train_full_size/``
and ``test_full_size/`` instead (``image_dirs``).

Errors in the label files stop the run (they mean the wrong file was given);
a broken image among thousands is recorded in the rejected table and skipped,
unless so many are broken that the folder itself must be wrong.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from hpa.classes import CHANNELS
from hpa.data.images import COLOUR_MODES, GREY_MODES, channel_problem, list_channels
from hpa.data.rejections import summary
from hpa.files import write_csv
from hpa.tables import (
    MANIFEST_COLUMNS,
    InputError,
    _read_id_table,
    format_target,
    parse_target,
    read_labels,
    read_test_ids,
)

log = logging.getLogger(__name__)

MODES = GREY_MODES | COLOUR_MODES

# Each split's image folder: the 512 px PNGs, or the full-size TIFFs (2048 or 3072 px, 16-bit).
SPLIT_DIRS = {"train": "train", "test": "test"}
FULL_SIZE_DIRS = {"train": "train_full_size", "test": "test_full_size"}


def check_image(image_id: str, files: dict[str, list]) -> tuple[int, int, str, str]:
    """Header-check the four channels (``list_channels`` entry): one file each, readable, same size.

    Returns (width, height, kind, problem); kind (a key of ``rejections.KINDS``) and problem
    are "" when the image is usable. Only headers are read, so this costs milliseconds even
    for 100k images.
    """
    problem = channel_problem(image_id, files)
    if problem:
        return 0, 0, "missing" if any(c not in files for c in CHANNELS) else "duplicate", problem
    size = None
    for color in CHANNELS:
        path = files[color][0]
        try:
            with Image.open(path) as im:
                mode, this = im.mode, im.size
        except (UnidentifiedImageError, OSError) as err:
            return 0, 0, "unreadable", f"unreadable channel {color}: {path} ({err})"
        if mode not in MODES:
            return 0, 0, "mode", f"channel {color} has mode {mode}, expected grey (8 or 16-bit) or RGB: {path}"
        if size is not None and this != size:
            return 0, 0, "size", f"channel {color} is {this}, the others are {size}: {path}"
        size = this
    return size[0], size[1], "", ""


def check_images(table: pd.DataFrame, workers: int) -> list[tuple[int, int, str, str]]:
    """``check_image`` for every row (``Id``, ``image_dir``), listing each folder once."""
    listings = {}
    for folder in table["image_dir"].unique():
        try:
            listings[folder] = list_channels(folder)
        except FileNotFoundError:
            listings[folder] = {}  # every image there is then missing: reported below, by fraction
    files = [listings[d].get(i, {}) for d, i in zip(table["image_dir"], table["Id"])]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(check_image, table["Id"], files))


def image_dirs_of(full_size: bool) -> dict[str, str]:
    """Each split's image folder for ``kaggle.full_size``: the one choice ingest and hash_images share."""
    return FULL_SIZE_DIRS if full_size else SPLIT_DIRS


def source_table(source_dir, image_dirs: dict[str, str] = SPLIT_DIRS) -> pd.DataFrame:
    """Every train and test Id of a Kaggle-layout folder: ``Id,Target,split,image_dir``.

    The one lookup of the source's images: ingest validates them from it (its
    ``image_dir`` is the manifest's) and hash_images hashes them from it, so the
    images compared for leaks are the images trained and predicted on.
    """
    source_dir = Path(source_dir)
    train = read_labels(source_dir / "train.csv").assign(split="train")
    test = read_test_ids(source_dir / "sample_submission.csv").assign(Target="", split="test")
    clash = set(train["Id"]) & set(test["Id"])
    if clash:
        raise InputError(
            f"{source_dir}: {len(clash)} Id(s) are in both train.csv and "
            f"sample_submission.csv, e.g. {sorted(clash)[0]}; a test image must not be trained on"
        )
    table = pd.concat([train, test], ignore_index=True)
    table["image_dir"] = [str(source_dir / image_dirs[s]) for s in table["split"]]
    return table


def read_external(path, known) -> pd.DataFrame:
    """Kept external images (``Id,Target,image_dir``) as training rows of source "external"."""
    df = _read_id_table(path, ["Id", "Target", "image_dir"])
    clash = sorted(set(df["Id"]) & set(known))
    if clash:
        raise InputError(f"{path}: external Id {clash[0]} is also a train or test Id; external Ids must be distinct")
    df["Target"] = [format_target(parse_target(t, where=f"{path}, line {i + 2}")) for i, t in enumerate(df["Target"])]
    return df.assign(split="train", source="external")[["Id", "Target", "split", "source", "image_dir"]]


def ingest(
    source_dir,
    source: str,
    *,
    workers: int = 8,
    max_rejected_fraction: float = 0.01,
    external_csv=None,
    image_dirs: dict[str, str] = SPLIT_DIRS,
    rejected_csv=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate a Kaggle-layout folder, plus cleaned external images if given; return (manifest, rejected).

    ``image_dirs`` names each split's image folder inside ``source_dir`` (``FULL_SIZE_DIRS``
    for Kaggle's full-size TIFFs). ``rejected_csv``: where the rejected table is written
    before a stop for too many of them, so that the list is there to read.
    """
    source_dir = Path(source_dir)
    table = source_table(source_dir, image_dirs).assign(source=source)
    if external_csv is not None:
        table = pd.concat([table, read_external(external_csv, known=table["Id"])], ignore_index=True)

    checks = check_images(table, workers)
    table["width"], table["height"], kind, problem = map(list, zip(*checks)) if checks else ([], [], [], [])
    problem = pd.Series(problem, index=table.index, dtype=str)

    bad = problem.ne("")
    rejected = table.loc[bad, ["Id", "source", "split"]].assign(kind=pd.Series(kind, index=table.index)[bad],
                                                                 reason=problem[bad])
    if rejected_csv is not None:
        write_csv(rejected, rejected_csv)
    for split, group in table.groupby("split"):
        fraction = bad[group.index].mean() if len(group) else 0.0
        if fraction > max_rejected_fraction:
            folder = source_dir / image_dirs[split]
            listed = f"; all are listed in {rejected_csv}" if rejected_csv is not None else ""
            raise InputError("\n".join([
                f"{folder}: {bad[group.index].sum()} of {len(group)} {split} images are unusable "
                f"(more than data.max_rejected_fraction={max_rejected_fraction}){listed}:",
                *summary(rejected[rejected["split"] == split], folder)]))
    for _, row in rejected.iterrows():
        log.warning("skipping %s image %s: %s", row["split"], row["Id"], row["reason"])
    manifest = table.loc[~bad, MANIFEST_COLUMNS].reset_index(drop=True)
    return manifest, rejected.reset_index(drop=True)

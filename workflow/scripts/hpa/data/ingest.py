"""Reading and validating a source (Kaggle layout or sample sheet), and the manifest.

A source in Kaggle layout is a folder with ``train.csv`` (``Id,Target``, or the columns
``kaggle.id_column`` and ``kaggle.target_column`` name), ``sample_submission.csv`` (its Id
column; other columns are ignored) and the per-channel images ``train/{Id}_{channel}.png``
and ``test/{Id}_{channel}.png`` (or ``.tif``, ``.jpg``: see ``hpa.data.images``) for each
channel of the vocabulary; Kaggle's full-size TIFFs sit in ``train_full_size/`` and
``test_full_size/`` instead (``image_dirs``). A sample sheet (``hpa.data.samples``) names
each channel's file itself.

The manifest records each image's files in one column per channel (``file_{channel}``);
``manifest_files`` is how every later stage finds them, whatever the source.

Errors in the label files stop the run (they mean the wrong file was given);
a broken image among thousands is recorded in the rejected table and skipped,
unless so many are broken that the folder itself must be wrong.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import UnidentifiedImageError

from hpa.classes import Vocabulary
from hpa.data.images import COLOUR_MODES, GREY_MODES, channel_files, channel_problem, list_channels
from hpa.data.rejections import summary
from hpa.data.samples import REFUSED_COLUMNS, sheet_rows
from hpa.data.stacks import open_image, split_ref
from hpa.files import warn_terminal, write_csv
from hpa.tables import (
    FILE_PREFIX,
    InputError,
    _read_id_table,
    classes_without_images,
    format_target,
    manifest_columns,
    parse_target,
    read_labels,
    read_test_ids,
)

log = logging.getLogger(__name__)

MODES = GREY_MODES | COLOUR_MODES

# Each split's image folder: the 512 px PNGs, or the full-size TIFFs (2048 or 3072 px, 16-bit).
SPLIT_DIRS = {"train": "train", "test": "test"}
FULL_SIZE_DIRS = {"train": "train_full_size", "test": "test_full_size"}


def manifest_files(row, channels: tuple[str, ...]) -> dict[str, Path]:
    """Channel -> file of one manifest row (a dict or pandas row), for every source.

    Ingest writes each image's files into the manifest's ``file_{channel}`` columns; a table
    without them (kept.csv, an older manifest) is in the Kaggle layout, found as
    ``{image_dir}/{Id}_{channel}.{ext}`` by the precedence of ``hpa.data.images.EXTENSIONS``.
    """
    listed = {channel: row.get(FILE_PREFIX + channel, "") for channel in channels}
    if all(isinstance(path, str) and path for path in listed.values()):
        return {channel: Path(path) for channel, path in listed.items()}
    return channel_files(row["image_dir"], row["Id"], channels)


def check_image(image_id: str, files: dict[str, list], channels: tuple[str, ...]) -> tuple[int, int, str, str]:
    """Header-check an image's ``channels`` (a ``list_channels`` entry): one file each, readable, same size.

    Returns (width, height, kind, problem); kind (a key of ``rejections.KINDS``) and problem
    are "" when the image is usable. Only headers are read, so this costs milliseconds even
    for 100k images.
    """
    problem = channel_problem(image_id, files, channels)
    if problem:
        return 0, 0, "missing" if any(c not in files for c in channels) else "duplicate", problem
    size = None
    for color in channels:
        path = files[color][0]
        try:
            with open_image(path) as im:
                mode, this = im.mode, im.size
        except (UnidentifiedImageError, OSError) as err:
            return 0, 0, "unreadable", f"unreadable channel {color}: {path} ({err})"
        if mode not in MODES:
            return 0, 0, "mode", f"channel {color} has mode {mode}, expected grey (8 or 16-bit) or RGB: {path}"
        if size is not None and this != size:
            return 0, 0, "size", f"channel {color} is {this}, the others are {size}: {path}"
        size = this
    return size[0], size[1], "", ""


def sheet_image(image_id: str, files: dict[str, str], channels: tuple[str, ...]) -> tuple[int, int, str, str]:
    """``check_image`` of a sample-sheet row, whose files are named, not listed: a missing one is said by path."""
    for channel in channels:
        if not files[channel] or not split_ref(files[channel])[0].is_file():
            return 0, 0, "missing", (f"channel {channel}: file {files[channel] or '(blank)'} not found; fix its path "
                                     "in the sample sheet (relative to the sheet's folder, or absolute)")
    return check_image(image_id, {c: [Path(files[c])] for c in channels}, channels)


def image_files(table: pd.DataFrame, channels: tuple[str, ...]) -> list[dict]:
    """Each row's files: listed (each Kaggle-layout folder once) or, for sheet rows (no image_dir), named."""
    listings = {}
    for folder in table["image_dir"].unique():
        try:
            listings[folder] = list_channels(folder, channels) if folder else {}
        except FileNotFoundError:
            listings[folder] = {}  # every image there is then missing: reported below, by fraction
    return [listings[row["image_dir"]].get(row["Id"], {}) if row["image_dir"]
            else {c: row[FILE_PREFIX + c] for c in channels} for _, row in table.iterrows()]


def check_images(table: pd.DataFrame, channels: tuple[str, ...], workers: int) -> tuple[list, list[dict]]:
    """``check_image`` for every row (``Id``, ``image_dir`` or the file columns); also each row's files."""
    files = image_files(table, channels)
    checks = [sheet_image if not d else check_image for d in table["image_dir"]]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda f, i, fs: f(i, fs, channels), checks, table["Id"], files))
    return results, files


def file_columns(files: list[dict], channels: tuple[str, ...]) -> dict[str, list[str]]:
    """The manifest's ``file_{channel}`` columns: the file each check read ("" where none was usable)."""
    def first(found, channel):
        paths = found.get(channel)
        return str(paths[0] if isinstance(paths, list) else paths) if paths else ""
    return {FILE_PREFIX + c: [first(found, c) for found in files] for c in channels}


def image_dirs_of(full_size: bool) -> dict[str, str]:
    """Each split's image folder for ``kaggle.full_size``: the one choice ingest and hash_images share."""
    return FULL_SIZE_DIRS if full_size else SPLIT_DIRS


def source_table(source_dir, image_dirs: dict[str, str] = SPLIT_DIRS, *, vocab: Vocabulary,
                 id_column: str = "Id", target_column: str = "Target") -> pd.DataFrame:
    """Every train and test Id of a Kaggle-layout folder: ``Id,Target,split,image_dir``, Target canonical.

    The one lookup of the source's images: ingest validates them from it (its
    ``image_dir`` is the manifest's) and hash_images hashes them from it, so the
    images compared for leaks are the images trained and predicted on. ``vocab`` reads
    train.csv's Target column (``target_column``); ``id_column`` names both files' Ids.
    """
    source_dir = Path(source_dir)
    train = read_labels(source_dir / "train.csv", vocab, id_column=id_column, target_column=target_column)
    train = train.assign(split="train")
    test = read_test_ids(source_dir / "sample_submission.csv", id_column).assign(Target="", split="test")
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


def read_source(source_dir, source: str, vocab: Vocabulary, *, samples=None, image_dirs: dict[str, str] = SPLIT_DIRS,
                id_column: str = "Id", target_column: str = "Target") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(rows, refused rows, where each split's images are) of a Kaggle-layout folder or a sample sheet."""
    if source == "samples":
        table, refused = sheet_rows(samples, vocab)
        # Test labels go to results/data/test_labels.csv (rule test_labels), never into the manifest.
        table.loc[table["split"] == "test", "Target"] = ""
        return table, refused, {"train": samples, "test": samples}
    table = source_table(source_dir, image_dirs, vocab=vocab, id_column=id_column, target_column=target_column)
    refused = pd.DataFrame(columns=REFUSED_COLUMNS)
    return table, refused, {split: Path(source_dir) / folder for split, folder in image_dirs.items()}


def stop_if_too_many(listed: pd.DataFrame, rejected: pd.DataFrame, folders: dict, max_fraction: float,
                     rejected_csv, channels: tuple[str, ...]) -> None:
    """Stop when more than ``max_fraction`` of a split (of ``listed``: Id, split) is rejected.

    Rows of an unknown split (a sample sheet's typo) count against the whole sheet.
    """
    known = listed["split"].isin(folders)
    groups = [(split, listed["split"].eq(split), rejected["split"].eq(split), folders[split])
              for split in sorted(set(listed["split"][known]))]
    if not known.all():
        groups.append(("listed", pd.Series(True, index=listed.index), pd.Series(True, index=rejected.index),
                       next(iter(folders.values()))))
    for split, is_listed, is_bad, folder in groups:
        n_bad, n = int(is_bad.sum()), int(is_listed.sum())
        if n and n_bad / n > max_fraction:
            listed_in = f"; all are listed in {rejected_csv}" if rejected_csv is not None else ""
            raise InputError("\n".join([
                f"{folder}: {n_bad} of {n} {split} images are unusable "
                f"(more than data.max_rejected_fraction={max_fraction}){listed_in}:",
                *summary(rejected[is_bad], folder, channels)]))


def ingest(
    source_dir,
    source: str,
    *,
    vocab: Vocabulary,
    samples=None,
    id_column: str = "Id",
    target_column: str = "Target",
    workers: int = 8,
    max_rejected_fraction: float = 0.01,
    external_csv=None,
    image_dirs: dict[str, str] = SPLIT_DIRS,
    rejected_csv=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate a source, plus cleaned external images if given; return (manifest, rejected).

    ``source`` "samples" reads the sample sheet ``samples``; any other reads the Kaggle-layout
    ``source_dir``, whose ``image_dirs`` names each split's image folder (``FULL_SIZE_DIRS``
    for Kaggle's full-size TIFFs) and whose label files name their columns ``id_column`` and
    ``target_column``. ``vocab`` parses the Targets and names the channels. ``rejected_csv``:
    where the rejected table is written before a stop for too many of them, so that the
    list is there to read.
    """
    table, refused, folders = read_source(source_dir, source, vocab, samples=samples, image_dirs=image_dirs,
                                          id_column=id_column, target_column=target_column)
    table = table.assign(source=source)
    if external_csv is not None:
        table = pd.concat([table, read_external(external_csv, known=table["Id"])], ignore_index=True)

    checks, files = check_images(table, vocab.channels, workers)
    table["width"], table["height"], kind, problem = map(list, zip(*checks)) if checks else ([], [], [], [])
    table = table.assign(**file_columns(files, vocab.channels))
    problem = pd.Series(problem, index=table.index, dtype=str)

    bad = problem.ne("")
    unusable = table.loc[bad, ["Id", "source", "split"]].assign(kind=pd.Series(kind, index=table.index)[bad],
                                                                 reason=problem[bad])
    rejected = pd.concat([refused, unusable], ignore_index=True) if len(refused) else unusable
    if rejected_csv is not None:
        write_csv(rejected, rejected_csv)
    listed = pd.concat([table[["Id", "split"]], refused[["Id", "split"]]], ignore_index=True)
    stop_if_too_many(listed, rejected.reset_index(drop=True), folders, max_rejected_fraction, rejected_csv,
                     vocab.channels)
    for _, row in rejected.iterrows():
        log.warning("skipping %s image %s: %s", row["split"], row["Id"], row["reason"])
    manifest = table.loc[~bad, manifest_columns(vocab.channels)].reset_index(drop=True)
    warn_empty_classes(manifest, vocab)
    return manifest, rejected.reset_index(drop=True)


def warn_empty_classes(manifest: pd.DataFrame, vocab: Vocabulary) -> list[str]:
    """Name, on the terminal, the listed classes no kept training image holds (and return them).

    Nothing can learn them: each scores F1 0, which the macro F1 over the full list averages in;
    fit_thresholds and evaluate_test report the figure over the classes that have images beside it.
    """
    empty = classes_without_images(manifest.loc[manifest["split"] == "train", "Target"], vocab.classes)
    if empty:
        warn_terminal(log, f"{len(empty)} of {vocab.n_classes} classes have no training image: "
                      f"{', '.join(empty)}. Nothing can learn them; each counts as F1 0 in the macro F1 over "
                      f"all {vocab.n_classes} classes (the headline), and the scores also give the macro F1 "
                      "over the classes that have images. Add images of them, or drop them from labels.names")
    return empty

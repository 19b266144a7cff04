"""The table formats every stage shares: label sets, the manifest, probability tables.

A label set is the canonical ``Target`` string (ascending space-separated class indices,
"0 16") or a 0/1 matrix of shape (images, classes); a probability table is ``Id, p0..p{n-1}``
for the vocabulary's n classes (``hpa.classes``; callers pass n, nothing here assumes the HPA
28). A dataset's own label files (names or indices, its own separator and column names) are
read once, by ``read_labels`` with the dataset's ``Vocabulary``; everything after reads the
canonical tables with ``read_canonical_labels``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from hpa.classes import NUM_CLASSES, Vocabulary, id_problem
from hpa.files import InputError  # noqa: F401 (re-exported: where the table readers raise it)

MANIFEST_COLUMNS = ["Id", "Target", "source", "split", "image_dir", "width", "height"]
# The manifest's path of each channel's file: "file_{channel}" (hpa.data.ingest.manifest_files reads it).
FILE_PREFIX = "file_"


def manifest_columns(channels) -> list[str]:
    """The manifest's columns for these channel names: ``MANIFEST_COLUMNS`` then one file column per channel."""
    return MANIFEST_COLUMNS + [FILE_PREFIX + c for c in channels]


def parse_canonical(text, n_classes: int, *, where: str) -> list[int]:
    """Parse a canonical ``Target`` cell ("16 0": space-separated indices below ``n_classes``)."""
    tokens = str(text).split()
    if not tokens:
        raise InputError(f"{where}: empty Target; every training image needs at least one class")
    try:
        labels = [int(t) for t in tokens]
    except ValueError:
        raise InputError(
            f"{where}: Target {text!r} is not space-separated integers; "
            f"write the classes as e.g. '16 0'"
        ) from None
    bad = [k for k in labels if not 0 <= k < n_classes]
    if bad:
        raise InputError(f"{where}: class {bad[0]} is outside 0..{n_classes - 1}")
    if len(set(labels)) != len(labels):
        raise InputError(f"{where}: Target {text!r} repeats a class; list each class once")
    return sorted(labels)


def parse_target(text, *, where: str) -> list[int]:
    """Parse a 2018 Kaggle ``Target`` cell ("16 0") into ascending HPA class numbers (0..27)."""
    return parse_canonical(text, NUM_CLASSES, where=where)


def format_target(labels) -> str:
    return " ".join(str(k) for k in sorted(labels))


def _read_id_table(path, required: list[str], rename: dict[str, str] | None = None) -> pd.DataFrame:
    """A CSV with unique, file-safe Ids (``id_problem``); ``rename`` maps its columns to ``Id``/``Target``
    (``kaggle.id_column``/``target_column``), and ``required`` names them as the file spells them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; put the Kaggle CSV there or fix the config")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}; the header must hold {','.join(required)} "
            f"(found {','.join(map(str, df.columns))}; kaggle.id_column and kaggle.target_column name them)"
        )
    df = df.rename(columns=rename or {})
    ids = df["Id"].str.strip()
    empty = np.flatnonzero(ids.eq("").to_numpy())
    if len(empty):
        raise InputError(f"{path}, line {empty[0] + 2}: empty Id")
    for row, image_id in enumerate(ids):
        problem = id_problem(image_id)
        if problem:
            raise InputError(f"{path}, line {row + 2}: {problem}")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise InputError(
            f"{path}, line {row + 2}: Id {ids.iloc[row]} appears more than once; "
            f"Ids must be unique (drop the repeated row)"
        )
    df["Id"] = ids
    return df


def read_labels(path, vocab: Vocabulary, *, id_column: str = "Id", target_column: str = "Target") -> pd.DataFrame:
    """A dataset's labels CSV as canonical ``Id,Target`` (ascending indices, space-separated).

    The Target cells are the dataset's own spelling, parsed by ``vocab.parse`` (class names
    or indices, ``vocab.separator``). No default: a source's classes are its own, and reading
    another's labels as the atlas's 28 would misread them silently (pass ``hpa.classes.HPA`` for the atlas).
    """
    df = _read_id_table(path, [id_column, target_column], {id_column: "Id", target_column: "Target"})
    df["Target"] = [
        format_target(vocab.parse(t, where=f"{path}, line {i + 2} (Id {id_})"))
        for i, (id_, t) in enumerate(zip(df["Id"], df["Target"]))
    ]
    return df[["Id", "Target"]]


def read_canonical_labels(path, n_classes: int) -> pd.DataFrame:
    """A labels table the pipeline wrote (``results/data/labels.csv``, ``test_labels.csv``): canonical
    ``Id,Target`` with indices below ``n_classes``; other columns are kept."""
    df = _read_id_table(path, ["Id", "Target"])
    df["Target"] = [
        format_target(parse_canonical(t, n_classes, where=f"{path}, line {i + 2} (Id {id_})"))
        for i, (id_, t) in enumerate(zip(df["Id"], df["Target"]))
    ]
    return df


def read_test_ids(path, id_column: str = "Id") -> pd.DataFrame:
    """The test Ids of ``sample_submission.csv`` (its ``id_column``; other columns are ignored)."""
    return _read_id_table(path, [id_column], {id_column: "Id"})[["Id"]]


def labels_to_matrix(targets, n_classes: int) -> np.ndarray:
    """One-hot (images, ``n_classes``) uint8 matrix from canonical Target strings."""
    y = np.zeros((len(targets), n_classes), dtype=np.uint8)
    for i, t in enumerate(targets):
        for k in str(t).split():
            if not 0 <= int(k) < n_classes:
                raise InputError(f"Target {t!r}: class {k} is outside 0..{n_classes - 1}; the labels were "
                                 f"written for another vocabulary (rerun ingest after changing labels:)")
            y[i, int(k)] = 1
    return y


def matrix_to_labels(y) -> list[str]:
    return [format_target(np.flatnonzero(row)) for row in np.asarray(y)]


def classes_without_images(targets, classes) -> list[str]:
    """The names among ``classes`` (the vocabulary's, in order) that no Target of ``targets`` (canonical)
    holds: listed classes nothing was trained on."""
    counts = labels_to_matrix(list(targets), len(classes)).sum(axis=0)
    return [name for name, n in zip(classes, counts) if n == 0]


def read_manifest(path, split: str | None = None) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"Id": str, "Target": str}, keep_default_na=False)
    if split is not None:
        df = df[df["split"] == split].reset_index(drop=True)
    return df


def prob_columns(n_classes: int) -> list[str]:
    """The probability columns of ``n_classes`` classes: ``p0..p{n-1}``."""
    return [f"p{k}" for k in range(n_classes)]


_PROB = re.compile(r"p\d+")


def prob_columns_of(table: pd.DataFrame, where="probability table") -> list[str]:
    """The ``p<k>`` columns of a probability table, in order; refused unless they are ``p0..p{n-1}``."""
    found = [c for c in table.columns if _PROB.fullmatch(str(c))]
    if not found or found != prob_columns(len(found)):
        raise InputError(f"{where}: probability columns {found[:5]}{'...' if len(found) > 5 else ''} are not "
                         f"p0..p{{n-1}} in order; it was not written by this pipeline (rerun the job that wrote it)")
    return found


def prob_matrix(table: pd.DataFrame, where="probability table") -> np.ndarray:
    """The (images, classes) probabilities of a probability table."""
    return table[prob_columns_of(table, where)].to_numpy()


def probability_table(ids, probs: np.ndarray) -> pd.DataFrame:
    """``Id,p0..p{n-1}``: the format of every probability table the pipeline writes (n: ``probs``' columns)."""
    probs = np.asarray(probs)
    columns = prob_columns(probs.shape[1])
    return pd.DataFrame(probs.round(6), columns=columns).assign(Id=np.asarray(ids))[["Id", *columns]]


def read_probs(path) -> pd.DataFrame:
    """A probability table with its Id as index and only its ``p0..p{n-1}`` columns (n from the header)."""
    table = pd.read_csv(path, dtype={"Id": str}).set_index("Id")
    return table[prob_columns_of(table, where=str(path))]

"""A source's training and test labels, in canonical form (``Id,Target``, ascending indices, a space).

Rules ``labels`` and ``test_labels`` write them (``results/data/labels.csv`` and
``results/data/test_labels.csv``) from the dataset's own files, read once through its
``Vocabulary``: the label analysis and the test scoring then read one format, whatever the
source, its column names and its separator. Only the label files are read, never an image:
the label analysis runs before the images are in place, and every listed training row
counts, also one whose image ingest later rejects. The test labels, which only score, are
those of the test images ingest kept (``kept_test_labels``): what is scored is what was
predicted, and the summary's count of test images is the evaluation's.
"""

from __future__ import annotations

import logging

import pandas as pd

from hpa.classes import Vocabulary
from hpa.data.samples import sheet_rows
from hpa.files import InputError
from hpa.tables import read_labels, read_test_ids

log = logging.getLogger(__name__)


def sheet_labels(samples, vocab: Vocabulary, split: str) -> pd.DataFrame:
    """``Id,Target`` of a sample sheet's usable ``split`` rows (those ingest refuses are left out, with a warning)."""
    rows, refused = sheet_rows(samples, vocab)
    for _, row in refused[refused["split"] == split].iterrows():
        log.warning("leaving out %s: %s", row["Id"], row["reason"])
    return rows.loc[rows["split"] == split, ["Id", "Target"]].reset_index(drop=True)


def train_labels(source: str, vocab: Vocabulary, *, train_csv=None, samples=None, id_column: str = "Id",
                 target_column: str = "Target") -> pd.DataFrame:
    """``Id,Target,source`` of every listed training image: train.csv's rows, or the sheet's train rows."""
    if source == "samples":
        table = sheet_labels(samples, vocab, "train")
    else:
        table = read_labels(train_csv, vocab, id_column=id_column, target_column=target_column)
    return table.assign(source=source)


def true_test_labels(vocab: Vocabulary, *, truth=None, test_ids=None, samples=None, id_column: str = "Id",
                target_column: str = "Target") -> pd.DataFrame:
    """``Id,Target`` of every test image: a sample sheet's labelled test rows, or a labels CSV ``truth``.

    A CSV must label exactly the test Ids of ``test_ids`` (sample_submission.csv, its
    ``id_column``): a test image left out would go unscored, an unknown Id is a wrong file.
    """
    if samples is not None:
        return sheet_labels(samples, vocab, "test")
    table = read_labels(truth, vocab, id_column=id_column, target_column=target_column)
    ids = set(read_test_ids(test_ids, id_column)["Id"])
    unknown = sorted(set(table["Id"]) - ids)
    if unknown:
        raise InputError(f"{truth}: {len(unknown)} Id(s) are not test images of {test_ids}, e.g. {unknown[0]}; "
                         "test_labels must label the test images")
    unlabelled = sorted(ids - set(table["Id"]))
    if unlabelled:
        raise InputError(f"{truth}: {len(unlabelled)} test image(s) of {test_ids} have no labels, e.g. "
                         f"{unlabelled[0]}; label every test image (every score is over all of them)")
    return table


def kept_test_labels(table: pd.DataFrame, kept_ids) -> pd.DataFrame:
    """The rows of ``table`` (``Id,Target``) whose Id ingest kept (``kept_ids``: the manifest's test Ids).

    A test row ingest rejected (a missing or unreadable file) was never predicted: scoring it as
    "no class" would count the pipeline's refusal as the model's error, and the evaluation would
    count one image more than the summary's "Images used". Each one left out is logged.
    """
    keep = table["Id"].isin(set(kept_ids))
    for image_id in table.loc[~keep, "Id"]:
        log.warning("test image %s is not scored: ingest rejected it (results/data/rejected.csv says why)", image_id)
    if (~keep).any():
        log.warning("%d of %d labelled test images are scored; %d rejected by ingest are not",
                    int(keep.sum()), len(table), int((~keep).sum()))
    return table[keep].reset_index(drop=True)

"""Sample sheets (``source: samples``): one row per image, one column per channel's file.

A sheet is a ``.tsv`` or ``.csv`` (other extensions are sniffed) with the columns ``Id``,
``split`` (``train`` or ``test``), ``Target`` (the dataset's class names or indices separated
by ``labels.separator``; empty for unlabelled test rows) and one column per channel of
``channels.names`` holding that channel's file, relative to the sheet's folder or absolute
(``workflow/schemas/samples.schema.yaml``).

Two levels of checks, as for the Kaggle layout: ``check_sheet`` refuses a sheet that cannot be
meant (missing file or column, no training row, test rows labelled only in part) when the
workflow starts; ``sheet_rows`` records each row that cannot be used (a bad or repeated Id,
an unknown split, an unknown class) with its line and the fix, and ingest skips it, up to
``data.max_rejected_fraction``.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pandas as pd
import yaml
from jsonschema import Draft202012Validator

from hpa.classes import Vocabulary, id_problem
from hpa.data.stacks import file_planes, plane_ref
from hpa.files import InputError
from hpa.tables import FILE_PREFIX, format_target

REQUIRED = ("Id", "split", "Target")
FIELD_FILE = "file"  # one multi-channel TIFF per field, instead of a column per channel (hpa.data.stacks)
SEPARATORS = {".tsv": "\t", ".tab": "\t", ".csv": ","}
REFUSED_COLUMNS = ["Id", "source", "split", "kind", "reason"]
SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "samples.schema.yaml"
# The schema's failures by column, as the kinds of rejected.csv (hpa.data.rejections).
SCHEMA_KINDS = {"Id": "bad_id", "split": "bad_split", "Target": "bad_target"}


@cache
def row_validator() -> Draft202012Validator:
    """The sheet's row schema, checked against its draft (2020-12, the draft Snakemake's validate() runs)."""
    schema = yaml.safe_load(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_problem(row, where: str) -> tuple[str, str]:
    """(kind, reason) of the first way ``row`` fails the sheet's schema; ("", "") when it passes."""
    for error in row_validator().iter_errors(dict(row)):
        column = error.path[0]  # check_sheet has made sure every required column is there
        allowed = error.schema.get("enum")
        fix = f"write one of {', '.join(allowed)}" if allowed else error.schema.get("description", "fix it")
        reason = f"{where}: {column} {error.instance!r} fails the sheet's schema ({error.message}); {fix} in the sheet"
        return SCHEMA_KINDS[column], reason
    return "", ""


def read_sheet(path) -> pd.DataFrame:
    """The sheet as strings (tab- or comma-separated by extension, else sniffed); blank cells are ""."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"samples: {path} not found; write the sample sheet there (columns Id, split, Target "
                         "and one per channel) or fix samples: in the config")
    sep = SEPARATORS.get(path.suffix.lower())
    if sep is None:
        with open(path, newline="") as fh:
            try:
                sep = csv.Sniffer().sniff(fh.readline(), delimiters="\t,;").delimiter
            except csv.Error:
                raise InputError(f"{path}: cannot tell the column separator; name the sheet .tsv (tabs) "
                                 "or .csv (commas)") from None
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    return df


def sheet_columns(df: pd.DataFrame, leading, channels) -> tuple[list[str], list[str]]:
    """The columns a sheet needs (``leading``, then a file column per channel unless it has the one
    multi-channel ``file`` column) and those of them it lacks."""
    columns = [*leading, *(() if FIELD_FILE in df.columns else channels)]
    return columns, [c for c in columns if c not in df.columns]


def check_sheet(df: pd.DataFrame, path, vocab: Vocabulary) -> bool:
    """Refuse a sheet as a whole (missing column, no training row, test rows labelled in part).

    Returns whether its test rows are labelled (then they are the run's test labels): all or
    none, since the workflow decides when it starts whether to score the test predictions.
    """
    columns, missing = sheet_columns(df, REQUIRED, vocab.channels)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; a sample sheet needs {', '.join(columns)} "
                         f"(one column per channel of channels.names, holding that channel's file, or a column "
                         f"{FIELD_FILE} naming one multi-channel TIFF per field); "
                         f"found {', '.join(df.columns) or 'no columns'}")
    split = df["split"].str.strip()
    if not split.eq("train").any():
        found = sorted(set(split))[:5]
        raise InputError(f"{path}: no row has split 'train' (found {found}); write train or test in the split "
                         "column of every row")
    labelled = df["Target"].str.strip().ne("")[split.eq("test")]
    if labelled.any() and not labelled.all():
        first = labelled.index[~labelled][0]
        raise InputError(
            f"{path}: {(~labelled).sum()} of {len(labelled)} test rows have no Target (e.g. line {first + 2}, "
            f"Id {df['Id'][first]}) while the others have one; label every test row (to score the test "
            "predictions) or clear every test row's Target")
    return bool(labelled.any())


def resolve(path, cell: str) -> str:
    """A file cell as a path the jobs can open: relative cells are relative to the sheet's folder."""
    cell = cell.strip()
    if not cell:
        return ""
    file = Path(cell)
    return str(file if file.is_absolute() else Path(path).parent / file)


def row_files(path, row, channels) -> tuple[dict[str, str], str]:
    """A row's {channel: file} (a plane of its multi-channel ``file`` where the sheet has that column,
    ``hpa.data.stacks``), and "" or why its file cannot hold the ``channels``."""
    cell = row.get(FIELD_FILE, "")
    if FIELD_FILE not in row or (not cell.strip() and all(c in row for c in channels)):
        return {c: resolve(path, row[c]) for c in channels}, ""
    file = resolve(path, cell)
    if not file or not Path(file).is_file():
        return {c: file for c in channels}, ""  # missing: ingest's check names the file
    planes, problem = file_planes(file, channels)
    return {c: plane_ref(file, k) for c, k in planes.items()}, problem


def row_problem(row, vocab: Vocabulary, where: str) -> tuple[str, str, str]:
    """(kind, reason, canonical Target) of one sheet row; kind is "" when the row is usable."""
    problem = id_problem(row["Id"])
    if problem:
        return "bad_id", f"{where}: {problem} in the sheet", ""
    kind, reason = schema_problem(row[list(REQUIRED)], where)
    if kind:
        return kind, reason, ""
    try:
        labels = vocab.parse(row["Target"], where=where, allow_empty=row["split"] == "test")
    except InputError as error:
        return "bad_target", str(error), ""
    return "", "", format_target(labels)


def sheet_rows(path, vocab: Vocabulary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sheet's usable rows (``Id,Target,split,image_dir`` and a file column per channel, Target
    canonical) and the refused ones (``Id,source,split,kind,reason``, the reason naming the line)."""
    df = read_sheet(path)
    check_sheet(df, path, vocab)
    df = df.assign(Id=df["Id"].str.strip(), split=df["split"].str.strip())
    repeated = df["Id"].duplicated(keep=False)
    rows, refused = [], []
    for i, row in df.iterrows():
        where = f"{path}, line {i + 2} (Id {row['Id']})"
        if repeated[i]:
            lines = [str(k + 2) for k in df.index[df["Id"] == row["Id"]]]
            kind, reason, target = "duplicate_id", (f"{where}: Id {row['Id']} is on lines {', '.join(lines)}; "
                                                    "give each image its own Id"), ""
        else:
            kind, reason, target = row_problem(row, vocab, where)
        files, problem = row_files(path, row, vocab.channels) if not kind else ({}, "")
        if problem:
            kind, reason = "channel_count", f"{where}: {problem}"
        if kind:
            refused.append(dict(Id=row["Id"], source="samples", split=row["split"], kind=kind, reason=reason))
            continue
        files = {FILE_PREFIX + c: f for c, f in files.items()}
        rows.append({"Id": row["Id"], "Target": target, "split": row["split"], "image_dir": "", **files})
    columns = ["Id", "Target", "split", "image_dir", *(FILE_PREFIX + c for c in vocab.channels)]
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(refused, columns=REFUSED_COLUMNS)


def new_image_sheet(path, channels) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """A sheet of new images (predict_new): Id -> {channel: file} in ``channels`` order, and (Id, reason)
    of the rows refused (an Id that cannot name a file, or on several rows: all of them, since which
    one is meant is not known). Training's columns; split and Target may be there and are not read."""
    df = read_sheet(path)
    _, missing = sheet_columns(df, ("Id",), channels)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; a sheet of new images needs Id and one "
                         f"column per channel of the ensemble's models ({', '.join(channels)}), holding its file (or a "
                         f"column {FIELD_FILE} naming one multi-channel TIFF per image); "
                         f"found {', '.join(df.columns) or 'no columns'}")
    ids = df["Id"].str.strip()
    repeated = ids.duplicated(keep=False)
    files, refused = {}, {}
    for i, image_id in ids.items():
        problem = id_problem(image_id) or (repeated[i] and f"Id {image_id} is on several lines; give each image its "
                                           "own Id")
        if not problem:
            files[image_id], problem = row_files(path, df.loc[i], channels)
        if problem:
            files.pop(image_id, None)
            refused.setdefault(image_id, f"{path}, line {i + 2}: {problem}")
    return files, list(refused.items())

"""The report's front page, written as reStructuredText the report's workflow.rst includes.

Snakemake's report renders reStructuredText and images but not CSV (its eye button downloads
them), so the scores a reader looks for first are written here as a figure embedded in the
page (a data URI: the report is one HTML file) and as a table in text.
"""

from __future__ import annotations

import base64
import csv
import io
import math

import pandas as pd

from hpa.tables import labels_to_matrix


def class_table(train: pd.DataFrame, names) -> pd.DataFrame:
    """``class, name, train_images, train_percent``: each class's number, name (``names``: the
    vocabulary's) and frequency in the training labels (the manifest's training images, external ones included)."""
    counts = labels_to_matrix(train["Target"], len(names)).sum(axis=0)
    return pd.DataFrame({"class": range(len(names)), "name": list(names), "train_images": counts,
                         "train_percent": (100 * counts / max(len(train), 1)).round(2)})


def _interval(score, low, high) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return ""
    return f"{score:.3f} [{low:.3f}, {high:.3f}]"


def _verdict(low, no_skill) -> str:
    """Whether the honest interval clears the no-skill line."""
    return "yes" if low > no_skill else "NO: no evidence of learning"


def scores_rows(comparison: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The comparison as text: header and one row per ensemble (its models in parentheses), best
    honest estimate first. The rest of ``comparison.csv`` (method, in-sample F1, job time) is in the
    report's Evaluation section: the front page's column is narrow."""
    has_test = "test_macro_f1" in comparison and comparison["test_macro_f1"].notna().any()
    header = ["ensemble (models)", "honest macro F1 [95% interval]", "no-skill (OOF)"]
    if has_test:
        header += ["test macro F1 [95% interval]", "no-skill (test)"]
    header.append("learning shown")
    rows = []
    for r in comparison.itertuples():
        row = [f"{r.ensemble} ({r.models})", _interval(r.honest_macro_f1, r.honest_low, r.honest_high),
               f"{r.oof_no_skill:.3f}"]
        if has_test:
            row += [_interval(r.test_macro_f1, r.test_low, r.test_high), f"{r.test_no_skill:.3f}"]
        row.append(_verdict(r.honest_low, r.oof_no_skill))
        rows.append(row)
    return header, rows


def _csv_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    quoted = ", ".join(f'"{h}"' for h in header)
    body = "".join(f"   {line}\n" for line in out.getvalue().splitlines())
    return f".. csv-table:: {title}\n   :header: {quoted}\n\n{body}\n"


def scores_page(comparison: pd.DataFrame, figure_png: bytes) -> str:
    """The scores section of the front page: the figure, then the same numbers as a table."""
    header, rows = scores_rows(comparison)
    uri = "data:image/png;base64," + base64.b64encode(figure_png).decode("ascii")
    # Wrapped: docutils drops a line over 10,000 characters; it removes the whitespace of a URI.
    wrapped = "\n   ".join(uri[i:i + 76] for i in range(0, len(uri), 76))
    return (
        f".. image:: {wrapped}\n   :alt: macro F1 of every ensemble with 95% intervals beside the no-skill line\n"
        "   :width: 100%\n\n"
        + _csv_table("Macro F1 of every ensemble, best honest estimate first", header, rows)
        + "*Honest*: each fold's images predicted with thresholds fitted on the other folds, so no "
        "image is scored by thresholds that saw its labels; the estimate to trust. *In-sample*: "
        "thresholds fitted and scored on the same out-of-fold images (optimistic). *No-skill*: the "
        "macro F1 of predicting every class for every image of the same images; a score whose "
        "interval lies above it shows learning. Intervals: 95% bootstrap over images.\n"
        + empty_classes_note(comparison)
    )


def empty_classes_note(comparison: pd.DataFrame) -> str:
    """How the scores count listed classes with no training image ("" when every class has images)."""
    empty = comparison.get("classes_without_images", pd.Series(dtype=str)).fillna("").astype(str)
    if not (empty != "").any():
        return ""
    names = sorted({n for cell in empty for n in cell.split(";") if n})
    figures = []
    for r in comparison.itertuples():
        parts = [f"{kind} {value:.3f}" for kind, value in (("honest", getattr(r, "honest_classes_with_images", None)),
                                                             ("test", getattr(r, "test_classes_with_images", None)))
                 if value is not None and not (isinstance(value, float) and math.isnan(value))]
        if parts:
            figures.append(f"{r.ensemble}: {', '.join(parts)}")
    return (f"\n**Classes with no training image: {', '.join(names)}.** Every macro F1 above averages all the "
            "classes of the list, these counted as F1 0 (nothing could learn them). Over the classes that have "
            f"training images only: {'; '.join(figures) or 'not computed'} (comparison.csv, "
            "honest_classes_with_images and test_classes_with_images).\n")


def classes_page(classes: pd.DataFrame) -> str:
    """The class table as text: number, name, training images and their share."""
    rows = [[str(r["class"]), r["name"], str(r["train_images"]), f"{r['train_percent']:.1f}"]
            for _, r in classes.iterrows()]
    return _csv_table(f"The {len(classes)} classes and their frequency in the training labels",
                      ["class", "name", "training images", "% of images"], rows)

"""Why images are unusable, by kind, and what to do about each kind.

Ingest records a kind (a key of ``KINDS``) beside each rejected image's reason; when too many
images of a split are unusable, ``summary`` says how many of each kind, the first few of each,
and a hint that fits that kind: a folder of images with a channel of another size needs another
fix than a wrong folder.
"""

from __future__ import annotations

import pandas as pd

from hpa.data.images import EXTENSIONS

EXAMPLES = 3  # Ids named per kind

# kind -> (what the images have, what to do: formatted with the split's folder)
KINDS = {
    "missing": ("missing a channel",
                "check that the images are in {folder}, one file per channel named {{Id}}_{{red,green,blue,yellow}}"
                + f" with one of {'/'.join(EXTENSIONS)}"),
    "duplicate": ("with two files for one channel",
                  "keep one file per channel (e.g. the .png or the .tif), in {folder}"),
    "unreadable": ("with an unreadable channel",
                   "the files are truncated or not images: copy them into {folder} again"),
    "mode": ("with a channel in an unsupported colour mode",
             "save each channel as a grey 8 or 16-bit image (or RGB)"),
    "size": ("with channels of different sizes",
             "the four channels of an image must have the same size: export the odd channel at the others' size"),
}


def summary(rejected: pd.DataFrame, folder) -> list[str]:
    """Lines for the rejected rows of one split (``Id``, ``kind``, ``reason``): per kind, most
    frequent first, the count, the first Ids (the first with its reason) and the hint."""
    lines = []
    for kind, group in sorted(rejected.groupby("kind"), key=lambda kv: -len(kv[1])):
        what, hint = KINDS[kind]
        ids = list(group["Id"])
        more = f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else ""
        lines.append(f"  {len(ids)} {what}, e.g. {ids[0]} ({group['reason'].iloc[0]})"
                     + "".join(f", {i}" for i in ids[1:EXAMPLES]) + more)
        lines.append("    -> " + hint.format(folder=folder))
    return lines

"""Why images are unusable, by kind, and what to do about each kind.

Ingest records a kind (a key of ``KINDS``) beside each rejected image's reason; when too many
images of a split are unusable, ``summary`` says how many of each kind, the first few of each,
and a hint that fits that kind: a folder of images with a channel of another size needs another
fix than a wrong folder. The ``bad_*`` and ``duplicate_id`` kinds are a sample sheet's rows
(``hpa.data.samples``), refused before any image is opened.
"""

from __future__ import annotations

import pandas as pd

from hpa.data.images import EXTENSIONS

EXAMPLES = 3  # Ids named per kind

# kind -> (what the images have, what to do: formatted with the split's folder)
KINDS = {
    "missing": ("missing a channel",
                "check that the images are in {folder}, one file per channel named {{Id}}_{{{channels}}}"
                + f" with one of {'/'.join(EXTENSIONS)} (a sample sheet: that its file columns name existing files)"),
    "duplicate": ("with two files for one channel",
                  "keep one file per channel (e.g. the .png or the .tif), in {folder}"),
    "unreadable": ("with an unreadable channel",
                   "the files are truncated or not images: copy them into {folder} again"),
    "mode": ("with a channel in an unsupported colour mode",
             "save each channel as a grey 8 or 16-bit image (or RGB)"),
    "size": ("with channels of different sizes",
             "the channels of an image must have the same size: export the odd channel at the others' size"),
    "bad_id": ("with an Id that cannot name a file",
               "rename them in {folder}: no '/', '\\', control character or leading '.'"),
    "duplicate_id": ("sharing an Id with another row", "give each row of {folder} its own Id"),
    "bad_split": ("with a split other than train or test", "write train or test in the split column of {folder}"),
    "channel_count": ("with a multi-channel file that does not hold channels.names",
                      "export each field's file of {folder} with the channels of channels.names in that order, "
                      "or name them in its OME metadata"),
    "bad_target": ("with a Target that names no class",
                   "use the class names or 0-based indices of labels.names (or labels.file), separated by "
                   "labels.separator, in {folder}"),
}


def summary(rejected: pd.DataFrame, folder, channels: tuple[str, ...]) -> list[str]:
    """Lines for the rejected rows of one split (``Id``, ``kind``, ``reason``): per kind, most
    frequent first, the count, the first Ids (the first with its reason) and the hint
    (``channels``: the channel names, for the hint of a missing one)."""
    lines = []
    for kind, group in sorted(rejected.groupby("kind"), key=lambda kv: -len(kv[1])):
        what, hint = KINDS[kind]
        ids = list(group["Id"])
        more = f" and {len(ids) - EXAMPLES} more" if len(ids) > EXAMPLES else ""
        lines.append(f"  {len(ids)} {what}, e.g. {ids[0]} ({group['reason'].iloc[0]})"
                     + "".join(f", {i}" for i in ids[1:EXAMPLES]) + more)
        lines.append("    -> " + hint.format(folder=folder, channels=",".join(channels)))
    return lines

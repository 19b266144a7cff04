"""The range a dataset's high-bit-depth images use, measured once per channel (the ``bit_depth`` rule).

Most microscope cameras write 12 bits into 16-bit files: a fixed shift by 8 turns such an
image into 16 grey levels. ``data.bit_depth.rule: auto`` measures each channel's range on a
sample of the dataset's images (the largest of their 99.99th percentiles, so a few hot
pixels do not set the scale) and shifts by the bits that bring it to 8 bits: 12-bit data
is shifted by 4 and keeps 256 levels. The choice is written to ``results/cache/bit_depth.json``,
which ``cache_images``, ``hash_images`` and ``predict_new`` all decode by, and logged. An
explicit ``shift`` is measured the same way and gets a warning, naming the key and a better
value, when it leaves most of the range unused or clips most pixels. 8-bit images are never
measured (nothing to choose); a channel without any high-bit-depth image in the sample keeps
the full 16-bit range (a shift by 8) should one turn up later.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hpa.data.images import COLOUR_MODES, EXTENSIONS, BitDepth, percentiles
from hpa.data.samples import read_sheet, row_files
from hpa.data.stacks import open_image, split_ref
from hpa.files import warn_terminal

log = logging.getLogger(__name__)

SAMPLE = 24  # images measured per channel: the range of a camera is the same in every image
TOP = 99.99  # percentile of each image taken as its brightest level
FULL_RANGE_BITS = 8  # a 16-bit channel that the sample could not measure


def sample_files(folder, channels, n: int = SAMPLE, seed: int = 0) -> dict[str, list[Path]]:
    """Up to ``n`` files of each channel in a Kaggle-layout folder (``{Id}_{channel}.{ext}``), drawn by ``seed``."""
    by_channel: dict[str, list[Path]] = {c: [] for c in channels}
    suffixes = {e for e in EXTENSIONS} | {e.upper() for e in EXTENSIONS}
    for path in sorted(Path(folder).iterdir()):
        color = path.stem.rpartition("_")[2]
        if path.suffix in suffixes and color in by_channel:
            by_channel[color].append(path)
    return _draw(by_channel, n, seed)


def sheet_files(sheet, channels, n: int = SAMPLE, seed: int = 0) -> dict[str, list[Path]]:
    """Up to ``n`` files of each channel among a sample sheet's training rows (those that exist:
    ingest reports the others)."""
    table = read_sheet(sheet)
    train = table[table["split"].str.strip() == "train"]
    rows = [row_files(sheet, row, channels) for _, row in train.iterrows()]
    by_channel = {c: [f[c] for f, problem in rows if not problem and f[c] and split_ref(f[c])[0].is_file()]
                  for c in channels}
    return _draw(by_channel, n, seed)


def _draw(by_channel: dict[str, list[Path]], n: int, seed: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(seed)
    return {c: [paths[i] for i in sorted(rng.choice(len(paths), min(n, len(paths)), replace=False))]
            for c, paths in by_channel.items()}


def measure(paths) -> dict:
    """The high-bit-depth images among ``paths``: how many, the brightest level (``top``, the largest 99.99th
    percentile) and each image's median (to tell how many pixels a shift clips). 8-bit and colour files are skipped."""
    tops, medians = [], []
    for path in paths:
        with open_image(path) as im:
            if im.mode == "L" or im.mode in COLOUR_MODES:
                continue
            arr = np.asarray(im)
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr), 0, None)
        median, top = percentiles(arr, (50, TOP))
        tops.append(float(top))
        medians.append(float(median))
    return {"images": len(tops), "top": max(tops, default=0.0), "medians": medians}


def bits_for(top: float) -> int:
    """The shift that maps ``top`` into 0..255 with the most levels: 4 for 12-bit data, 8 for 16-bit."""
    return max(0, int(np.ceil(top)).bit_length() - 8)


def shift_problem(bits: int, seen: dict) -> str:
    """Why an explicit ``shift`` by ``bits`` looks wrong for the measured channel ("" when it does not)."""
    if not seen["images"]:
        return ""
    levels = int(seen["top"]) >> bits
    if seen["top"] < 2 ** (bits + 4):
        return f"leaves most of the range unused: its brightest pixels reach {levels} of 255"
    clipped = sum(m >= 256 << bits for m in seen["medians"])
    if clipped * 2 > len(seen["medians"]):
        return f"clips most pixels to 255 in {clipped} of {len(seen['medians'])} sampled images"
    return ""


def resolve(depth: BitDepth, files: dict[str, list]) -> dict:
    """The per-channel rules ``depth`` stands for on this dataset ({channel: files sampled}), as bit_depth.json
    holds them: ``{"rule": ..., "channels": {name: {"rule", "bits", "low", "high", "images", "top"}},
    "warnings": [...]}``.

    ``auto`` becomes a measured ``shift`` per channel; ``shift`` and ``percentile`` stay as given,
    with a warning (on the terminal, and in ``warnings`` for the summary) where an explicit shift
    does not fit the data. A sample measures the channels, not each image: the decoders check each
    image (``hpa.data.clipping``).
    """
    channels, warnings = {}, []
    for color, paths in files.items():
        seen = measure(paths) if depth.rule in ("auto", "shift") else {"images": 0, "top": 0.0, "medians": []}
        bits = depth.bits
        if depth.rule == "auto":
            bits = bits_for(seen["top"]) if seen["images"] else FULL_RANGE_BITS
            log.info("channel %s: %d high-bit-depth image(s) sampled, brightest level %.0f: shift by %d bits%s",
                     color, seen["images"], seen["top"], bits, "" if seen["images"] else " (none sampled: full range)")
        elif depth.rule == "shift" and (problem := shift_problem(bits, seen)):
            warnings.append(f"data.bit_depth.bits={bits} {problem} (channel {color}, brightest level "
                            f"{seen['top']:.0f} in {seen['images']} sampled images); data.bit_depth.bits: "
                            f"{bits_for(seen['top'])} (or rule: auto) keeps its range")
            warn_terminal(log, warnings[-1])
        rule = "shift" if depth.rule == "auto" else depth.rule
        channels[color] = {"rule": rule, "bits": bits, "low": depth.low, "high": depth.high,
                           "images": seen["images"], "top": round(seen["top"], 3)}
    # The warnings also go to the run's summary, which reads them here.
    return {"rule": depth.rule, "channels": channels, "warnings": warnings}


def depths(record: dict, channels) -> dict[str, BitDepth]:
    """Each channel's decoding rule from a ``resolve`` record (bit_depth.json), for ``channels`` in order."""
    known = record["channels"]
    missing = [c for c in channels if c not in known]
    if missing:
        raise ValueError(f"bit_depth.json has no rule for channel(s) {missing} (it lists {list(known)}); "
                         "it was measured for other channels: rerun the bit_depth rule")
    return {c: BitDepth(known[c]["rule"], known[c]["bits"], known[c]["low"], known[c]["high"]) for c in channels}

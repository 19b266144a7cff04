"""Images a bit shift does not fit, found where each image is decoded (``data.clipping``).

``data.bit_depth.rule: auto`` measures each channel's range on a sample of the training images;
one field exported at another range (a full-range 16-bit export among a 12-bit camera's, 16
times brighter) is decoded by the sample's shift all the same, and half its pixels clip to 255.
So every decoder (cache_images, hash_images, predict_new) measures each high-bit-depth plane's
share of pixels at 255 and at 0 (``hpa.data.images.range_shares``); a channel over
``data.clipping.bright`` (at 255) or ``data.clipping.dark`` (at 0) is listed with its Id and
shares (``results/data/clipped/*.csv``, predict_new's ``clipped`` column), warned about on the
terminal and named in the run's summary. When more than ``data.max_rejected_fraction`` of a
split's images are clipped, the shift is wrong for the data, not for one field: the run stops,
naming the keys that fix it.

The shift is not chosen per image: one scale for every image is what keeps a bright field
brighter than a dim one (the reason to shift rather than stretch), and a per-image shift would
make a field's brightness depend on its own content. ``data.bit_depth.rule: percentile`` is the
per-image rule, chosen explicitly; a flagged field is better exported again at the others' range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from hpa.files import InputError, warn_terminal

log = logging.getLogger(__name__)

COLUMNS = ["Id", "channel", "bright_share", "dark_share"]
EXAMPLES = 3  # images named in a warning


@dataclass(frozen=True)
class Clipping:
    """``data.clipping``: the share of a channel's pixels at 255 (``bright``) or at 0 (``dark``) after the
    bit-depth rule above which the image is listed as clipped."""

    bright: float = 0.05
    dark: float = 0.99

    def __post_init__(self):
        for key in ("bright", "dark"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"data.clipping.{key}={getattr(self, key)}; give a share in 0..1")

    def rows(self, image_id: str, shares: dict[str, tuple[float, float]]) -> list[dict]:
        """Table rows (``COLUMNS``) of the channels of one image whose shares are over a limit."""
        return [{"Id": image_id, "channel": color, "bright_share": round(bright, 4), "dark_share": round(dark, 4)}
                for color, (bright, dark) in shares.items() if bright > self.bright or dark > self.dark]


def table(rows: list[dict]) -> pd.DataFrame:
    """The clipped channels as a table (``COLUMNS``), one row per image and channel."""
    return pd.DataFrame(rows, columns=COLUMNS)


def note(rows: list[dict]) -> str:
    """One image's clipped channels in words ("" for none): predict_new's ``clipped`` column."""
    return "; ".join(f"{r['channel']} {r['bright_share']:.0%} at 255, {r['dark_share']:.0%} at 0" for r in rows)


def check(clipped: pd.DataFrame, n_images: int, max_fraction: float, where: str) -> None:
    """Warn on the terminal about the clipped images of ``where`` (``n_images`` decoded); stop when
    more than ``max_fraction`` (``data.max_rejected_fraction``) of them are clipped."""
    ids = list(dict.fromkeys(clipped["Id"]))
    if not ids:
        return
    first = clipped.iloc[0]
    message = (f"{where}: {len(ids)} of {n_images} images clipped by the bit-depth rule (over data.clipping: "
               f"a channel's pixels at 255 or at 0), e.g. {first['Id']} ({first['channel']}: "
               f"{first['bright_share']:.0%} at 255, {first['dark_share']:.0%} at 0)"
               + "".join(f", {i}" for i in ids[1:EXAMPLES]) + (" and more" if len(ids) > EXAMPLES else ""))
    fix = ("export the odd fields at the others' range, or set data.bit_depth.rule: percentile (each image "
           "stretched on its own), or data.bit_depth.rule: shift with data.bit_depth.bits (the shift that "
           "fits every image; results/cache/bit_depth.json holds the measured one), or raise data.clipping.bright")
    if len(ids) / max(n_images, 1) > max_fraction:
        # The job's outputs (the clipped table among them) go when it fails; its log stays.
        for row in clipped.itertuples():
            log.warning("clipped: %s %s %.4f at 255, %.4f at 0", row.Id, row.channel, row.bright_share, row.dark_share)
        raise InputError(f"{message}: more than data.max_rejected_fraction={max_fraction}, each listed in the "
                         f"job's log; {fix}")
    warn_terminal(log, f"{message}; listed in results/data/clipped/. If they are many: {fix}")

"""A folder of new images: which Ids are usable (and why not the others), decoded a batch at a time.

The files are named ``{Id}_{channel}.{ext}`` by the checkpoint's channel names; a folder whose
files carry other names is refused as a whole, naming both lists, before any image is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hpa.data.clipping import Clipping
from hpa.data.images import EXTENSIONS, BitDepth, channel_files, list_channels, load_image
from hpa.data.ingest import check_image


def channel_names(folder) -> list[str]:
    """The channel names the folder's image files carry (what follows the last ``_`` of ``{Id}_{channel}.{ext}``)."""
    suffixes = {*EXTENSIONS, *(e.upper() for e in EXTENSIONS)}
    return sorted({p.stem.rpartition("_")[2] for p in Path(folder).iterdir() if p.suffix in suffixes and "_" in p.stem})


def check_channels(folder, channels) -> None:
    """Refuse a folder whose files carry other channel names than ``channels`` (the checkpoint's), naming both."""
    found = channel_names(folder)
    if found != sorted(channels):
        raise ValueError(
            f"{folder}: its images carry the channel names {found}, the ensemble's models were trained on "
            f"{list(channels)}; name the files {{Id}}_{{channel}}.{{ext}} by the models' channels (each of "
            f"{list(channels)} once per image), or predict with models trained on these channels")


def list_images(folder, channels) -> tuple[list[str], list[tuple[str, str]]]:
    """Ids whose channels are there, readable and of one size, and (Id, reason) for the rest.

    ``channels``: the checkpoint's channel names; a folder carrying others is refused
    (``check_channels``). Only headers are read (``check_image``, as ingest does), so a reason
    is known before any image is decoded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; set new_images to a folder of {{Id}}_{{channel}} "
                                f"images ({'/'.join(EXTENSIONS)})")
    check_channels(folder, channels)
    problems = {image_id: check_image(image_id, files, channels)[3]
                for image_id, files in list_channels(folder, channels).items()}
    usable = sorted(i for i, problem in problems.items() if not problem)
    broken = sorted((i, problem) for i, problem in problems.items() if problem)
    return usable, broken


def decode(folder, image_id: str, channels, sizes, depth, fit: str,
           shares: dict | None = None) -> tuple[dict[int, np.ndarray], str]:
    """The image at each of ``sizes`` ({size: (C, size, size) uint8}), or ({}, why it could not be decoded);
    ``shares`` receives its high-bit-depth channels' shares at 255 and at 0 (``hpa.data.clipping``)."""
    try:
        files = channel_files(folder, image_id, channels)
        return {size: load_image(files, size, depth, fit=fit, shares=shares) for size in sizes}, ""
    except Exception as err:  # one broken file must not stop the folder: it gets a reason instead
        return {}, f"could not decode: {type(err).__name__}: {err}"


def decode_checked(folder, image_id: str, channels, sizes, depth, fit: str, clipping: Clipping,
                   clipped: dict | None) -> tuple[dict[int, np.ndarray], str]:
    """``decode``, recording the image's clipped channels (``clipping``'s rows) in ``clipped[image_id]``."""
    shares: dict = {}
    images, why = decode(folder, image_id, channels, sizes, depth, fit, shares)
    if clipped is not None:
        clipped[image_id] = clipping.rows(image_id, shares)
    return images, why


def batches(folder, ids: list[str], channels, sizes, depth: BitDepth, batch: int, workers: int = 1,
            fit: str = "pad", clipping: Clipping = Clipping(), clipped: dict | None = None) -> Iterator[tuple]:
    """For each run of ``batch`` Ids: (decoded Ids, {size: uint8 array of them}, [(Id, reason)] of the rest).

    Only one batch is held at a time, at each size a checkpoint needs; ``workers`` threads decode
    (PIL releases the GIL while decoding). ``depth`` (one rule or {channel: rule}) and ``fit`` as
    the cache decoded the training images; ``clipped`` ({Id: rows}) receives the channels the
    bit-depth rule clips, by ``clipping`` (``hpa.data.clipping``).
    """
    sizes, channels = sorted(set(sizes)), tuple(channels)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(ids), batch):
            part = ids[start:start + batch]
            results = list(pool.map(lambda i: decode_checked(folder, i, channels, sizes, depth, fit, clipping,
                                                             clipped), part))
            good = [i for i, (_, why) in zip(part, results) if not why]
            arrays = {size: np.zeros((len(good), len(channels), size, size), dtype=np.uint8) for size in sizes}
            for row, (images, _) in enumerate(r for r in results if not r[1]):
                for size in sizes:
                    arrays[size][row] = images[size]
            yield good, arrays, [(i, why) for i, (_, why) in zip(part, results) if why]

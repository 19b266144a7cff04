"""New images: which Ids are usable (and why not the others), decoded a batch at a time.

The images are a folder of files named ``{Id}_{channel}.{ext}`` by the checkpoint's channel names
(a folder whose files carry other names is refused as a whole, naming both lists, before any
image is read), or a sample sheet naming each image's files as training's sheet does.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hpa.data.clipping import Clipping
from hpa.data.images import EXTENSIONS, BitDepth, list_channels, load_image
from hpa.data.ingest import check_image, sheet_image
from hpa.data.samples import new_image_sheet
from hpa.files import InputError


def channel_names(folder) -> list[str]:
    """The channel names the folder's image files carry (what follows the last ``_`` of ``{Id}_{channel}.{ext}``)."""
    suffixes = {*EXTENSIONS, *(e.upper() for e in EXTENSIONS)}
    return sorted({p.stem.rpartition("_")[2] for p in Path(folder).iterdir() if p.suffix in suffixes and "_" in p.stem})


def check_channels(folder, channels) -> None:
    """Refuse a folder whose files carry other channel names than ``channels`` (the checkpoint's), naming both."""
    found = channel_names(folder)
    if found != sorted(channels):
        examples = sorted(p.name for p in Path(folder).iterdir() if p.is_file())[:3]
        raise InputError(
            f"{folder}: its images carry the channel names {found} (files such as {examples}), the ensemble's "
            f"models were trained on {list(channels)}; name the files {{Id}}_{{channel}}.{{ext}} by the models' "
            f"channels (each of {list(channels)} once per image), give new_images a sample sheet naming each "
            "image's files, or predict with models trained on these channels")


def checked_files(source, channels) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """Each listed Id's file per channel (where it has one of each) and its problem ("" when usable)."""
    if source.is_file():
        named, refused = new_image_sheet(source, channels)
        problems = {image_id: sheet_image(image_id, files, channels)[3] for image_id, files in named.items()}
        return {i: {c: Path(f[c]) for c in channels} for i, f in named.items()}, {**problems, **dict(refused)}
    check_channels(source, channels)
    listed = list_channels(source, channels)
    problems = {image_id: check_image(image_id, files, channels)[3] for image_id, files in listed.items()}
    return {i: {c: f[c][0] for c in channels} for i, f in listed.items() if not problems[i]}, problems


def list_images(source, channels) -> tuple[dict[str, dict[str, Path]], list[tuple[str, str]]]:
    """{Id: {channel: file}} of the images whose channels are there, readable and of one size, and
    (Id, reason) for the rest, sorted by Id.

    ``source``: a folder of ``{Id}_{channel}`` files (one carrying other channel names than
    ``channels``, the checkpoint's, is refused: ``check_channels``) or a sample sheet
    (``hpa.data.samples.new_image_sheet``). Only headers are read (as ingest does), so a reason
    is known before any image is decoded.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such folder or sheet; set new_images to a folder of "
                                f"{{Id}}_{{channel}} images ({'/'.join(EXTENSIONS)}) or to a sample sheet")
    files, problems = checked_files(source, channels)
    usable = {i: files[i] for i in sorted(problems) if not problems[i]}
    broken = sorted((i, problem) for i, problem in problems.items() if problem)
    return usable, broken


def decode(files, sizes, depth, fit: str, shares: dict | None = None) -> tuple[dict[int, np.ndarray], str]:
    """The image ({channel: file}) at each of ``sizes`` ({size: (C, size, size) uint8}), or ({}, why it
    could not be decoded); ``shares`` receives its high-bit-depth channels' shares at 255 and at 0
    (``hpa.data.clipping``)."""
    try:
        return {size: load_image(files, size, depth, fit=fit, shares=shares) for size in sizes}, ""
    except Exception as err:  # one broken file must not stop the folder: it gets a reason instead
        return {}, f"could not decode: {type(err).__name__}: {err}"


def decode_checked(files, image_id: str, sizes, depth, fit: str, clipping: Clipping,
                   clipped: dict | None) -> tuple[dict[int, np.ndarray], str]:
    """``decode``, recording the image's clipped channels (``clipping``'s rows) in ``clipped[image_id]``."""
    shares: dict = {}
    images, why = decode(files, sizes, depth, fit, shares)
    if clipped is not None:
        clipped[image_id] = clipping.rows(image_id, shares)
    return images, why


def batches(files: dict[str, dict[str, Path]], ids: list[str], channels, sizes, depth: BitDepth, batch: int,
            workers: int = 1, fit: str = "pad", clipping: Clipping = Clipping(),
            clipped: dict | None = None) -> Iterator[tuple]:
    """For each run of ``batch`` Ids: (decoded Ids, {size: uint8 array of them}, [(Id, reason)] of the rest).

    ``files``: each Id's {channel: file} (``list_images``).
    Only one batch is held at a time, at each size a checkpoint needs; ``workers`` threads decode
    (PIL releases the GIL while decoding). ``depth`` (one rule or {channel: rule}) and ``fit`` as
    the cache decoded the training images; ``clipped`` ({Id: rows}) receives the channels the
    bit-depth rule clips, by ``clipping`` (``hpa.data.clipping``).
    """
    sizes, channels = sorted(set(sizes)), tuple(channels)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(ids), batch):
            part = ids[start:start + batch]
            results = list(pool.map(lambda i: decode_checked(files[i], i, sizes, depth, fit, clipping, clipped),
                                    part))
            good = [i for i, (_, why) in zip(part, results) if not why]
            arrays = {size: np.zeros((len(good), len(channels), size, size), dtype=np.uint8) for size in sizes}
            for row, (images, _) in enumerate(r for r in results if not r[1]):
                for size in sizes:
                    arrays[size][row] = images[size]
            yield good, arrays, [(i, why) for i, (_, why) in zip(part, results) if why]

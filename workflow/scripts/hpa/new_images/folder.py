"""A folder of new images: which Ids are usable (and why not the others), decoded a batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hpa.classes import CHANNELS
from hpa.data.images import EXTENSIONS, BitDepth, list_channels, load_image
from hpa.data.ingest import check_image


def list_images(folder) -> tuple[list[str], list[tuple[str, str]]]:
    """Ids whose four channels are there, readable and of one size, and (Id, reason) for the rest.

    Only headers are read (``check_image``, as ingest does), so a reason is known
    before any image is decoded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; set new_images to a folder of {{Id}}_{{color}} "
                                f"images ({'/'.join(EXTENSIONS)})")
    problems = {image_id: check_image(image_id, files, CHANNELS)[3]
                for image_id, files in list_channels(folder, CHANNELS).items()}
    usable = sorted(i for i, problem in problems.items() if not problem)
    broken = sorted((i, problem) for i, problem in problems.items() if problem)
    return usable, broken


def decode(folder, image_id: str, sizes, depth: BitDepth) -> tuple[dict[int, np.ndarray], str]:
    """The image at each of ``sizes`` ({size: (4, size, size) uint8}), or ({}, why it could not be decoded)."""
    try:
        return {size: load_image(folder, image_id, size, depth) for size in sizes}, ""
    except Exception as err:  # one broken file must not stop the folder: it gets a reason instead
        return {}, f"could not decode: {type(err).__name__}: {err}"


def batches(folder, ids: list[str], sizes, depth: BitDepth, batch: int, workers: int = 1) -> Iterator[tuple]:
    """For each run of ``batch`` Ids: (decoded Ids, {size: uint8 array of them}, [(Id, reason)] of the rest).

    Only one batch is held at a time, at each size a checkpoint needs; ``workers`` threads decode
    (PIL releases the GIL while decoding).
    """
    sizes = sorted(set(sizes))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(ids), batch):
            part = ids[start:start + batch]
            results = list(pool.map(lambda i: decode(folder, i, sizes, depth), part))
            good = [i for i, (_, why) in zip(part, results) if not why]
            arrays = {size: np.zeros((len(good), len(CHANNELS), size, size), dtype=np.uint8) for size in sizes}
            for row, (images, _) in enumerate(r for r in results if not r[1]):
                for size in sizes:
                    arrays[size][row] = images[size]
            yield good, arrays, [(i, why) for i, (_, why) in zip(part, results) if why]

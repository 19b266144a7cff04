"""A user's own cell masks: one label image per Id (``{Id}.png`` or ``{Id}.tif``), 0 = background.

A palette PNG counts by its indices (as label PNGs are often saved); colour images are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hpa.files import InputError

SUFFIXES = (".png", ".tif", ".tiff")


def border_ids(mask: np.ndarray) -> np.ndarray:
    """The ids of the cells a label image's border cuts (sorted, 0 = background left out)."""
    mask = np.asarray(mask)
    edge = np.unique(np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]))
    return edge[edge > 0]


def mask_path(folder, image_id: str) -> Path:
    """The mask file of ``image_id`` in ``folder``; an InputError naming what was looked for if none."""
    folder = Path(folder)
    found = [folder / f"{image_id}{s}" for s in SUFFIXES if (folder / f"{image_id}{s}").is_file()]
    if not found:
        raise InputError(f"{folder}: no mask for image {image_id} (looked for {image_id}" + "/".join(SUFFIXES)
                         + "); put one label image per Id there, or leave cells.masks unset to segment")
    if len(found) > 1:
        raise InputError(f"{folder}: several masks for image {image_id} ({', '.join(p.name for p in found)}); keep one")
    return found[0]


def load_masks(folder, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The label image of ``image_id`` as int32; refused (InputError) if it is not one integer plane
    of non-negative labels, or if ``shape`` (height, width of the image) is given and differs."""
    path = mask_path(folder, image_id)
    try:
        with Image.open(path) as im:
            mode, mask = im.mode, np.asarray(im)
    except OSError as err:
        raise InputError(f"{path}: cannot read the mask ({err})") from err
    if mask.ndim != 2 or mode in ("RGB", "RGBA", "LA", "CMYK") or not np.issubdtype(mask.dtype, np.integer):
        raise InputError(f"{path}: a mask must be one plane of integer cell labels (0 = background), "
                         f"got mode {mode} with shape {mask.shape}; save it as a 16-bit grey PNG or an integer TIFF")
    if mask.min() < 0:
        raise InputError(f"{path}: negative labels; cells are 1, 2, ... and background 0")
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise InputError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} px (width x height) but image "
                         f"{image_id} is {shape[1]}x{shape[0]} px; masks must match their image's size")
    return mask.astype(np.int32)

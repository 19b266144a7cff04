"""Decoding the four channel images of one field of view (Kaggle naming: ``{Id}_{color}.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hpa.classes import CHANNELS


def channel_path(image_dir, image_id: str, color: str) -> Path:
    return Path(image_dir) / f"{image_id}_{color}.png"


def to_uint8(im: Image.Image) -> Image.Image:
    """Bring a single-band image to 8 bits without changing its brightness scale."""
    if im.mode == "L":
        return im
    arr = np.asarray(im)
    if arr.dtype == np.uint16 or im.mode.startswith("I;16"):
        arr = arr.astype(np.uint32) >> 8
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def load_image(image_dir, image_id: str, size: int | None = None) -> np.ndarray:
    """Read the four channels as a (4, size, size) uint8 array."""
    planes = []
    for color in CHANNELS:
        with Image.open(channel_path(image_dir, image_id, color)) as im:
            im = to_uint8(im)
            if size is not None and im.size != (size, size):
                # BILINEAR in PIL widens its kernel when shrinking, so it antialiases.
                im = im.resize((size, size), Image.BILINEAR)
            planes.append(np.asarray(im, dtype=np.uint8))
    return np.stack(planes)

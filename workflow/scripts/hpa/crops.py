"""Crops of square image batches: random crops for training, fixed grids of crops for inference.

The 1st place of the competition trained on 512 crops of 768 px images (and 1024 crops
of 1536 px ones) and predicted on a grid of crops of each test image. With
``data.cache_size`` above ``data.image_size`` the cache keeps the larger image, training
takes a random ``image_size`` crop of it (optionally of a randomly rescaled window), and
inference runs the model on every crop of ``predict.crops``.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

# Crop grids of inference, by name; "tilesN" (N = 2..9) is an N x N grid of evenly spaced crops.
GRIDS = ("none", "center", "corners", "five")
TILES = re.compile(r"tiles([2-9])")

Box = tuple[int, int]  # top, left


def check_grid(grid: str) -> None:
    if grid not in GRIDS and not TILES.fullmatch(grid):
        raise ValueError(f"predict.crops: {grid!r}; choose one of {list(GRIDS)} or tiles2..tiles9")


def crop_boxes(size: int, crop: int | None, grid: str) -> list[Box | None]:
    """Top-left corners of the crops of ``grid`` in a ``size`` image; [None] for the whole image."""
    check_grid(grid)
    if grid == "none" or crop is None:
        return [None]
    if crop > size:
        raise ValueError(f"crop {crop} px is larger than the {size} px image; lower data.image_size "
                         f"or raise data.cache_size")
    far, mid = size - crop, (size - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far)]
    if grid == "center":
        return [(mid, mid)]
    if grid == "corners":
        return corners
    if grid == "five":
        return corners + [(mid, mid)]
    n = int(TILES.fullmatch(grid).group(1))
    steps = [round(i * far / (n - 1)) for i in range(n)]
    return [(top, left) for top in steps for left in steps]


def take(x: torch.Tensor, box: Box | None, crop: int | None) -> torch.Tensor:
    """The ``crop`` x ``crop`` window of a batch at ``box`` (the batch itself for None)."""
    if box is None:
        return x
    top, left = box
    return x[..., top : top + crop, left : left + crop]


def center(x: torch.Tensor, crop: int | None) -> torch.Tensor:
    return take(x, crop_boxes(x.shape[-1], crop, "center")[0], crop)


def random_crops(x: torch.Tensor, crop: int, generator: torch.Generator,
                 scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """A random ``crop`` window of each image; with ``scale`` != (1, 1), of a window rescaled by a random factor.

    A factor s takes a window of ``crop / s`` pixels (at most the image) and resizes it to
    ``crop``: s > 1 zooms in, s < 1 sees more of the field at a lower resolution. Without
    rescaling the crops are exact pixel windows, in the input's dtype.
    """
    n, size = x.shape[0], x.shape[-1]
    if crop > size:
        raise ValueError(f"crop {crop} px is larger than the {size} px cache; raise data.cache_size")
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    window = (crop / s).round().clamp(1, size).long()
    corner = (torch.rand(n, 2, generator=generator) * (size - window + 1)[:, None]).long()
    if scale == (1.0, 1.0):
        return torch.stack([take(x[i], (int(corner[i, 0]), int(corner[i, 1])), crop) for i in range(n)])
    # One resample of the batch: each output grid spans its image's window (normalised coordinates).
    half = window.float() / size
    mid = (corner.float() + window[:, None].float() / 2) / size * 2 - 1  # (top, left) centres in [-1, 1]
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([half, zero, mid[:, 1]], 1), torch.stack([zero, half, mid[:, 0]], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], crop, crop], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)

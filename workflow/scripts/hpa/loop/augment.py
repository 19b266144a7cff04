"""Training-time augmentation of uint8 image batches, on whatever device they are on.

Working on whole batches on the device (one affine resample for rotation and
zoom, one multiply for intensity) keeps augmentation off the data-loading
critical path, which at 512 px is what starves a GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hpa.crops import random_crops
from hpa.dihedral import random_dihedral
from hpa.spec import AugmentConfig  # noqa: F401 (its settings, torch-free; re-exported)


def _uniform(n, low, high, generator):
    return low + (high - low) * torch.rand(n, generator=generator)


def random_affine(x: torch.Tensor, rotate: float, zoom: tuple[float, float], generator) -> torch.Tensor:
    """Rotate each image by up to ``rotate`` degrees and zoom by a factor in ``zoom``."""
    n = x.shape[0]
    angle = _uniform(n, -rotate, rotate, generator) * math.pi / 180
    scale = 1.0 / _uniform(n, zoom[0], zoom[1], generator)  # sampling-grid scale
    # Shift the crop window anywhere it stays inside the image (none when zooming out).
    room = (1.0 - scale).clamp(min=0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * room[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def intensity_jitter(x: torch.Tensor, brightness: float, contrast: float, generator) -> torch.Tensor:
    """Per-image, per-channel gain and contrast, as staining and exposure vary between wells."""
    n, c = x.shape[:2]
    gain = _uniform(n * c, 1 - brightness, 1 + brightness, generator).view(n, c, 1, 1).to(x.device)
    factor = _uniform(n * c, 1 - contrast, 1 + contrast, generator).view(n, c, 1, 1).to(x.device)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean) * gain


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  crop: int | None = None) -> torch.Tensor:
    """uint8 (n, C, h, w) -> augmented float on the 0..255 scale (what the model's Normalize takes).

    With ``crop``, each image is first cut to a random ``crop`` x ``crop`` window of the cache image.
    """
    if crop is not None:
        x = random_crops(x, crop, generator, cfg.crop_scale)
    if cfg.dihedral:
        x = random_dihedral(x, generator)
    x = x.float()
    if cfg.geometric:
        x = random_affine(x, cfg.rotate, cfg.zoom, generator)
    if cfg.brightness > 0 or cfg.contrast > 0:
        x = intensity_jitter(x, cfg.brightness, cfg.contrast, generator)
    return x.clamp_(0, 255)

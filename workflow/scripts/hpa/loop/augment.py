"""Training-time augmentation of uint8 image batches, on whatever device they are on.

Working on whole batches on the device (one affine resample for rotation and
zoom, one multiply for intensity) keeps augmentation off the data-loading
critical path, which at 512 px is what starves a GPU. Every random number is
drawn on the host from the epoch's generator (so a resumed epoch draws the same),
packed into one tensor and copied to the device once, without waiting: a
blocking copy would drain the GPU's queue every step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hpa.config.spec import AugmentConfig  # noqa: F401 (its settings, torch-free; re-exported)
from hpa.crops import random_crops
from hpa.dihedral import apply_dihedral, dihedral_flags


def _uniform(n, low, high, generator):
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_params(n: int, rotate: float, zoom: tuple[float, float], generator) -> torch.Tensor:
    """(n, 6): each image's affine matrix, rotated by up to ``rotate`` degrees and zoomed by a factor in ``zoom``."""
    angle = _uniform(n, -rotate, rotate, generator) * math.pi / 180
    scale = 1.0 / _uniform(n, zoom[0], zoom[1], generator)  # sampling-grid scale
    # Shift the crop window anywhere it stays inside the image (none when zooming out).
    room = (1.0 - scale).clamp(min=0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * room[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    return torch.stack([cos, -sin, shift[:, 0], sin, cos, shift[:, 1]], 1)


def resample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.reshape(-1, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, rotate: float, zoom: tuple[float, float], generator) -> torch.Tensor:
    """Rotate each image by up to ``rotate`` degrees and zoom by a factor in ``zoom``."""
    return resample(x, affine_params(x.shape[0], rotate, zoom, generator).to(x.device))


def jitter(x: torch.Tensor, gain: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel gain and contrast, as staining and exposure vary between wells."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean) * gain


def draw(n: int, channels: int, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Every random number of a batch's augmentation, (n, k) on the host, in one tensor.

    Columns: 3 dihedral flags, 6 affine entries, then the channels' gains and contrast factors,
    each group present only when configured; drawn in that order.
    """
    parts = []
    if cfg.dihedral:
        parts.append(dihedral_flags(torch.randint(0, 8, (n,), generator=generator)))
    if cfg.geometric:
        parts.append(affine_params(n, cfg.rotate, cfg.zoom, generator))
    if cfg.brightness > 0 or cfg.contrast > 0:
        parts.append(_uniform(n * channels, 1 - cfg.brightness, 1 + cfg.brightness, generator).view(n, channels))
        parts.append(_uniform(n * channels, 1 - cfg.contrast, 1 + cfg.contrast, generator).view(n, channels))
    return torch.cat(parts, 1) if parts else torch.zeros(n, 0)


def to_device(params: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One copy of the packed numbers, from pinned memory without waiting on a GPU."""
    if device.type == "cuda":
        params = params.pin_memory()
    return params.to(device, non_blocking=True)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator,
                  crop: int | None = None) -> torch.Tensor:
    """uint8 (n, C, h, w) -> augmented float on the 0..255 scale (what the model's Normalize takes).

    With ``crop``, each image is first cut to a random ``crop`` x ``crop`` window of the cache image.
    """
    if crop is not None:
        x = random_crops(x, crop, generator, cfg.crop_scale)
    n, c = x.shape[:2]
    params = to_device(draw(n, c, cfg, generator), x.device)
    if cfg.dihedral:
        x, params = apply_dihedral(x, params[:, :3]), params[:, 3:]
    x = x.float()
    if cfg.geometric:
        x, params = resample(x, params[:, :6]), params[:, 6:]
    if cfg.brightness > 0 or cfg.contrast > 0:
        x = jitter(x, params[:, :c, None, None], params[:, c:, None, None])
    return x.clamp_(0, 255)

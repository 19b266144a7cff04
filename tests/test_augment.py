"""Augmentation drawn on the host and packed into one copy: the same images as the per-transform code it replaced."""

import math

import pytest
import torch
import torch.nn.functional as F

from hpa.dihedral import apply_dihedral, dihedral, dihedral_flags
from hpa.loop.augment import AugmentConfig, augment_batch


def reference_augment(x, cfg, generator):
    """The augmentation as it was before (a dihedral per distinct transform, three copies to the device)."""
    if cfg.dihedral:
        choice = torch.randint(0, 8, (x.shape[0],), generator=generator)
        out = x.clone()
        for t in choice.unique().tolist():
            idx = (choice == t).nonzero(as_tuple=True)[0]
            out[idx] = dihedral(x[idx], t)
        x = out
    x = x.float()
    n = x.shape[0]
    if cfg.geometric:
        u = lambda k, lo, hi: lo + (hi - lo) * torch.rand(k, generator=generator)  # noqa: E731
        angle = u(n, -cfg.rotate, cfg.rotate) * math.pi / 180
        scale = 1.0 / u(n, cfg.zoom[0], cfg.zoom[1])
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1.0 - scale).clamp(min=0)[:, None]
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.brightness > 0 or cfg.contrast > 0:
        c = x.shape[1]
        gain = (1 - cfg.brightness + 2 * cfg.brightness * torch.rand(n * c, generator=generator)).view(n, c, 1, 1)
        factor = (1 - cfg.contrast + 2 * cfg.contrast * torch.rand(n * c, generator=generator)).view(n, c, 1, 1)
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = ((x - mean) * factor + mean) * gain
    return x.clamp_(0, 255)


@pytest.mark.parametrize("cfg", [
    AugmentConfig(dihedral=True, rotate=15, zoom=(1.0, 1.2), brightness=0.1, contrast=0.1),  # config/hpa.yaml's
    AugmentConfig(dihedral=True),
    AugmentConfig(dihedral=False, rotate=30, zoom=(0.9, 1.1)),
    AugmentConfig(dihedral=False, brightness=0.2),
])
def test_same_generator_same_augmented_batch_as_before(cfg):
    x = torch.randint(0, 256, (32, 4, 16, 16), dtype=torch.uint8)
    ours = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    before = reference_augment(x, cfg, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, before, atol=1e-4)


def test_batched_dihedral_is_each_transform_exactly():
    x = torch.randint(0, 256, (8, 3, 5, 5), dtype=torch.uint8)
    out = apply_dihedral(x, dihedral_flags(torch.arange(8)))
    for t in range(8):
        assert torch.equal(out[t], dihedral(x[t], t))

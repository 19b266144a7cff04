"""The dihedral group on image batches, shared by training augmentation and test-time augmentation.

Fluorescence fields of view have no up, down, left or right, so all eight
rotations and reflections of an image are equally valid views of it.
"""

from __future__ import annotations

import torch

from hpa.views import TTA_TRANSFORMS, transforms_for  # noqa: F401 (re-exported)


def dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Apply dihedral transform ``t`` to the last two (spatial) dims."""
    x = torch.rot90(x, t % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if t >= 4 else x


def dihedral_inverse(x: torch.Tensor, t: int) -> torch.Tensor:
    """Undo ``dihedral(., t)``: a map computed on view ``t`` brought back to the original's frame."""
    x = torch.flip(x, dims=(-1,)) if t >= 4 else x
    return torch.rot90(x, -(t % 4), dims=(-2, -1))


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch gets its own random dihedral transform (square images)."""
    choice = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = x.clone()
    for t in choice.unique().tolist():
        idx = (choice == t).nonzero(as_tuple=True)[0].to(x.device)
        out[idx] = dihedral(x[idx], t)
    return out

"""The dihedral group on image batches, shared by training augmentation and test-time augmentation.

Fluorescence fields of view have no up, down, left or right, so all eight
rotations and reflections of an image are equally valid views of it.
"""

from __future__ import annotations

import torch

# Transform t: rotate by t % 4 quarter turns, then mirror left-right when t >= 4.
TTA_TRANSFORMS = {
    "none": (0,),
    "flips": (0, 4, 6, 2),  # identity, left-right, up-down, both (= half turn)
    "dihedral": tuple(range(8)),
}


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


def transforms_for(name: str) -> tuple[int, ...]:
    try:
        return TTA_TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown tta {name!r}; choose one of {sorted(TTA_TRANSFORMS)}") from None

"""The dihedral group on image batches, shared by training augmentation and test-time augmentation.

Fluorescence fields of view have no up, down, left or right, so all eight
rotations and reflections of an image are equally valid views of it.
"""

from __future__ import annotations

import itertools

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


def _by_flags(x: torch.Tensor, flags) -> torch.Tensor:
    """Transpose, flip rows, flip columns, each where its flag (n, 3) is set: any dihedral transform per image."""
    def where(i, y):
        return torch.where(flags[:, i].view(-1, *[1] * (x.dim() - 1)) > 0.5, y, x)

    x = where(0, x.transpose(-2, -1))
    x = where(1, x.flip(-2))
    return where(2, x.flip(-1))


def _flags_of(t: int) -> tuple[float, float, float]:
    probe = torch.arange(9.0).view(1, 3, 3)
    return next(f for f in itertools.product((0.0, 1.0), repeat=3)
                if torch.equal(_by_flags(probe, torch.tensor([f])), dihedral(probe, t)))


# Transform t as (transpose, flip rows, flip columns): the batch's transforms in three selects on the
# device, where indexing each transform's images needed a host read and a copy per transform drawn.
AS_FLAGS = torch.tensor([_flags_of(t) for t in range(8)])


def dihedral_flags(choice: torch.Tensor) -> torch.Tensor:
    """(n,) transforms 0..7 -> (n, 3) flags for ``apply_dihedral``."""
    return AS_FLAGS[choice]


def apply_dihedral(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Each image of the (square) batch transformed by its flags (from ``dihedral_flags``), exactly."""
    return _by_flags(x, flags)


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of the batch gets its own random dihedral transform (square images)."""
    choice = torch.randint(0, 8, (x.shape[0],), generator=generator)
    return apply_dihedral(x, dihedral_flags(choice).to(x.device))

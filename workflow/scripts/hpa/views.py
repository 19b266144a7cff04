"""The TTA settings by name, as dihedral views: torch-free, so that jobs that only recombine
probability tables (``combine_views``) start without importing torch."""

from __future__ import annotations

# Transform t: rotate by t % 4 quarter turns, then mirror left-right when t >= 4 (hpa.dihedral).
TTA_TRANSFORMS = {
    "none": (0,),
    "flips": (0, 4, 6, 2),  # identity, left-right, up-down, both (= half turn)
    "dihedral": tuple(range(8)),
}


def transforms_for(name: str) -> tuple[int, ...]:
    try:
        return TTA_TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown tta {name!r}; choose one of {sorted(TTA_TRANSFORMS)}") from None

"""Multi-label losses on logits, by config name."""

from __future__ import annotations

from torch import nn

LOSSES = {
    "bce": nn.BCEWithLogitsLoss,
}


def build_loss(name: str) -> nn.Module:
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None

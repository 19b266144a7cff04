"""Model factory: torchvision backbones with a 4-channel stem and a 28-logit head.

The stem's fourth (yellow) filter is initialised from the pretrained RGB
filters, so ImageNet features carry over to the extra channel. Models take
raw uint8 images: per-channel normalisation is the first layer, with the
dataset's statistics as buffers, so a checkpoint needs nothing else to predict.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from .classes import NUM_CLASSES

# Config name -> torchvision constructor. The stem and head are found by
# structure (first 3-channel conv, last linear layer), so any of these works.
ARCHITECTURES = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "densenet121": tvm.densenet121,
    "efficientnet_b0": tvm.efficientnet_b0,
}


class Normalize(nn.Module):
    """uint8 (or 0..255 float) images -> standardised float, per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, x):
        return (x.float() - self.mean) / self.std


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


def four_channel_stem(model: nn.Module) -> nn.Module:
    """Give the first 3-channel conv a fourth input filter = mean of its R and G filters."""
    name, conv = next(
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3
    )
    new = nn.Conv2d(
        4, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
    )
    with torch.no_grad():
        new.weight[:, :3] = conv.weight
        # Yellow (ER) is imaged like red and green, so its filter starts as their mean.
        new.weight[:, 3] = conv.weight[:, :2].mean(dim=1)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)
    return model


def classification_head(model: nn.Module, num_classes: int, dropout: float) -> nn.Module:
    """Replace the last linear layer with dropout + a ``num_classes`` linear layer."""
    name, linear = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    _replace(model, name, nn.Sequential(nn.Dropout(dropout), nn.Linear(linear.in_features, num_classes)))
    return model


def build_backbone(arch: str, pretrained: str | None) -> nn.Module:
    try:
        constructor = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}") from None
    if not pretrained:
        return constructor(weights=None)
    weights = tvm.get_model_weights(constructor).DEFAULT
    try:
        return constructor(weights=weights)
    except Exception as err:
        raise RuntimeError(
            f"could not load ImageNet weights for {arch} ({err}). Download {weights.url} "
            f"into $TORCH_HOME/hub/checkpoints/ on a machine with internet, or set "
            f"pretrained: null to train from scratch"
        ) from err


def build_model(
    arch: str,
    mean=(0.0,) * 4,
    std=(1.0,) * 4,
    pretrained: str | None = None,
    dropout: float = 0.0,
    num_classes: int = NUM_CLASSES,
) -> nn.Module:
    model = build_backbone(arch, pretrained)
    model = classification_head(four_channel_stem(model), num_classes, dropout)
    return nn.Sequential(Normalize(mean, std), model)

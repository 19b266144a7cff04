"""Model factory: torchvision backbones with a 4-channel input and a 28-logit head.

Two ways to feed four channels to an ImageNet backbone:
- a 4-channel stem: the first conv gets a fourth (yellow) filter initialised
  from the pretrained RGB filters (``mean_rg``, ``copy_r``) or ``zeros``;
- an ``adapter``: a learned 1x1 conv 4->3 in front of the unchanged backbone,
  initialised to pass R, G, B through.
Models take raw uint8 (or 0..255 float) images: per-channel normalisation is
the first layer, with the dataset's statistics as buffers, so a checkpoint
needs nothing else to predict.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from .classes import NUM_CLASSES

# Config name -> torchvision constructor. Stem and head are found by structure
# (first 3-channel conv, last linear layer), so any classification model works.
ARCHITECTURES = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "densenet121": tvm.densenet121,
    "efficientnet_b0": tvm.efficientnet_b0,
}

STEMS = ("mean_rg", "copy_r", "zeros", "adapter")


class Normalize(nn.Module):
    """0..255 images -> standardised float, per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, x):
        return (x.float() - self.mean) / self.std


class HPANet(nn.Module):
    """Normalisation, optional 4->3 adapter, backbone with its head replaced."""

    def __init__(self, backbone: nn.Module, head_name: str, mean, std, adapter: nn.Module | None = None):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.adapter = adapter
        self.backbone = backbone
        self.head_name = head_name

    def forward(self, x):
        x = self.normalize(x)
        if self.adapter is not None:
            x = self.adapter(x)
        return self.backbone(x)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.get_submodule(self.head_name).parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in self.parameters() if id(p) not in head]


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


def four_channel_stem(model: nn.Module, init: str = "mean_rg") -> nn.Module:
    """Give the first 3-channel conv a fourth input filter, initialised per ``init``."""
    name, conv = next(
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3
    )
    new = nn.Conv2d(
        4, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
    )
    with torch.no_grad():
        new.weight[:, :3] = conv.weight
        # Yellow (ER) is imaged like red and green: start its filter from theirs.
        fourth = {
            "mean_rg": lambda w: w[:, :2].mean(dim=1),
            "copy_r": lambda w: w[:, 0],
            "zeros": lambda w: torch.zeros_like(w[:, 0]),
        }[init](conv.weight)
        new.weight[:, 3] = fourth
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)
    return model


def rgb_adapter() -> nn.Module:
    """1x1 conv 4->3 that starts as 'drop yellow', so pretrained features are intact at step 0."""
    conv = nn.Conv2d(4, 3, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c] = 1.0
    return conv


def classification_head(model: nn.Module, num_classes: int, dropout: float) -> str:
    """Replace the last linear layer with dropout + a ``num_classes`` linear layer; return its name."""
    name, linear = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    _replace(model, name, nn.Sequential(nn.Dropout(dropout), nn.Linear(linear.in_features, num_classes)))
    return name


def build_backbone(arch: str, pretrained: str | None = None, weights: str | None = None) -> nn.Module:
    try:
        constructor = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}") from None
    model = constructor(weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights: {path} does not exist; give the path of a {arch} state dict")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    elif pretrained == "imagenet":
        api_weights = tvm.get_model_weights(constructor).DEFAULT
        try:
            model = constructor(weights=api_weights)
        except Exception as err:
            raise RuntimeError(
                f"could not load ImageNet weights for {arch} ({err}). On a machine with internet, "
                f"download {api_weights.url} and set `weights: <path of that file>` in this model's "
                f"config (or place it in $TORCH_HOME/hub/checkpoints/); or set pretrained: null"
            ) from err
    return model


def build_model(
    arch: str,
    mean=(0.0,) * 4,
    std=(1.0,) * 4,
    pretrained: str | None = None,
    dropout: float = 0.0,
    stem: str = "mean_rg",
    weights: str | None = None,
    num_classes: int = NUM_CLASSES,
) -> HPANet:
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {list(STEMS)}")
    backbone = build_backbone(arch, pretrained, weights)
    adapter = rgb_adapter() if stem == "adapter" else None
    if adapter is None:
        four_channel_stem(backbone, stem)
    head_name = classification_head(backbone, num_classes, dropout)
    return HPANet(backbone, head_name, mean, std, adapter)

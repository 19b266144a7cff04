"""torchvision backbones with a 4-channel input: constructors, ImageNet weights, stems, new layers.

Two ways to feed four channels to an ImageNet backbone:
- a 4-channel stem: the first conv gets a fourth (yellow) filter initialised
  from the pretrained RGB filters (``mean_rg``, ``copy_r``) or ``zeros``;
- an ``adapter``: a learned 1x1 conv 4->3 in front of the unchanged backbone,
  initialised to pass R, G, B through.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import Bottleneck, conv1x1

from hpa.models.branchnet import BranchNet

STEMS = ("mean_rg", "copy_r", "zeros", "adapter")


# Config name -> constructor. Stem and head are found by structure (first
# 3-channel conv, last linear layer), so any torchvision classifier works.
SCRATCH = {"branchnet": BranchNet}  # no pretrained weights; four channels natively (hpa.spec.SCRATCH_ARCHS)


ARCHITECTURES = {
    "resnet18": tvm.resnet18,
    "resnet34": tvm.resnet34,
    "resnet50": tvm.resnet50,
    "resnet152": tvm.resnet152,
    "densenet121": tvm.densenet121,
    "efficientnet_b0": tvm.efficientnet_b0,
    "vgg16": tvm.vgg16,
    **SCRATCH,
}


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


def residual_block(block_type: type, channels: int) -> nn.Module:
    """A stride-2 ResNet block keeping ``channels``; its residual branch starts at zero."""
    planes = channels // block_type.expansion
    block = block_type(channels, planes, stride=2,
                       downsample=nn.Sequential(conv1x1(channels, channels, stride=2), nn.BatchNorm2d(channels)))
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    # The block starts as a strided projection of the (pretrained) layer4 features.
    nn.init.zeros_((block.bn3 if isinstance(block, Bottleneck) else block.bn2).weight)
    return block


def add_extra_blocks(model: nn.Module, n: int) -> list[str]:
    """Append ``n`` stride-2 blocks to layer4 (so pretrained keys keep their names); return their names."""
    if n < 0:
        raise ValueError(f"extra_blocks must be >= 0, got {n}")
    if n == 0:
        return []
    if not isinstance(model, tvm.ResNet):
        raise ValueError(f"extra_blocks={n} applies to ResNets only, not {type(model).__name__}; "
                         f"use extra_blocks: 0 or a resnet arch")
    first = len(model.layer4)
    channels = model.fc.in_features
    for _ in range(n):
        model.layer4.append(residual_block(type(model.layer4[0]), channels))
    return [f"layer4.{i}" for i in range(first, first + n)]


def build_backbone(arch: str, pretrained: str | None = None, weights: str | None = None) -> nn.Module:
    try:
        constructor = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}, "
                         f"or timm/<name> for any timm model") from None
    if arch in SCRATCH:
        if pretrained is not None or weights:
            raise ValueError(f"arch {arch!r} has no pretrained weights (it trains from scratch); "
                             f"set pretrained: null and no weights")
        return constructor()
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

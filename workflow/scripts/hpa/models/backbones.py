"""torchvision backbones with a C-channel input: constructors, ImageNet weights, stems, new layers.

Each channel's pretrained source is ``rgb_source`` (``Vocabulary.rgb_source()``): the
pretrained RGB filter (0, 1, 2) it starts from, or None. Two ways to feed C channels to an
ImageNet backbone:
- a C-channel stem: the first conv gets one filter per channel, the pretrained R, G or B
  filter for a channel mapped to it, and for the others a filter made from the pretrained
  ones by ``init`` (``mean_rg``, ``copy_r``) or ``zeros``: for the atlas's four stains
  (R, G, B mapped, yellow not) exactly the fourth (yellow) filter of the 4-channel stem;
- an ``adapter``: a learned 1x1 conv C->3 in front of the unchanged backbone,
  initialised to pass the mapped channels to their R, G, B input (the others start at 0).
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
SCRATCH = {"branchnet": BranchNet}  # no pretrained weights; any number of channels natively (hpa.config.spec.SCRATCH_ARCHS)


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


def channel_stem(model: nn.Module, rgb_source, init: str = "mean_rg") -> nn.Module:
    """Give the first 3-channel conv one input filter per channel: channel c copies the pretrained filter
    ``rgb_source[c]``; a channel mapped to none starts per ``init`` (yellow's rule in the atlas's stem)."""
    name, conv = next(
        (n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3
    )
    new = nn.Conv2d(
        len(rgb_source), conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
    )
    with torch.no_grad():
        # Yellow (ER) is imaged like red and green: start its filter from theirs.
        unmapped = {
            "mean_rg": lambda w: w[:, :2].mean(dim=1),
            "copy_r": lambda w: w[:, 0],
            "zeros": lambda w: torch.zeros_like(w[:, 0]),
        }[init](conv.weight)
        for c, source in enumerate(rgb_source):
            new.weight[:, c] = unmapped if source is None else conv.weight[:, source]
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    _replace(model, name, new)
    return model


def rgb_adapter(rgb_source) -> nn.Module:
    """1x1 conv C->3 that starts passing each mapped channel to its RGB input and dropping the others
    (for the atlas: 'drop yellow'), so pretrained features are intact at step 0. With no channel mapped,
    every RGB input starts as the channels' mean (a grey image, as a pretrained network knows one)."""
    conv = nn.Conv2d(len(rgb_source), 3, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c, source in enumerate(rgb_source):
            if source is not None:
                conv.weight[source, c] = 1.0
        if all(source is None for source in rgb_source):
            conv.weight.fill_(1.0 / len(rgb_source))
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


def build_backbone(arch: str, pretrained: str | None = None, weights: str | None = None, *,
                   in_channels: int) -> nn.Module:
    """The torchvision classifier (3-channel, its stem adapted later) or a from-scratch one on ``in_channels``."""
    try:
        constructor = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}, "
                         f"or timm/<name> for any timm model") from None
    if arch in SCRATCH:
        if pretrained is not None or weights:
            raise ValueError(f"arch {arch!r} has no pretrained weights (it trains from scratch); "
                             f"set pretrained: null and no weights")
        return constructor(channels=in_channels)
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

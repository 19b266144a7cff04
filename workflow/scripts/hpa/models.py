"""Model factory: torchvision backbones with a 4-channel input and a 28-logit head.

Two ways to feed four channels to an ImageNet backbone:
- a 4-channel stem: the first conv gets a fourth (yellow) filter initialised
  from the pretrained RGB filters (``mean_rg``, ``copy_r``) or ``zeros``;
- an ``adapter``: a learned 1x1 conv 4->3 in front of the unchanged backbone,
  initialised to pass R, G, B through.
Models take raw uint8 (or 0..255 float) images: per-channel normalisation is
the first layer, with the dataset's statistics as buffers, so a checkpoint
needs nothing else to predict.

Options from the competition write-ups (all newly initialised parts count as
the head, for differential learning rates and head-only warm-up):
- ``head="gapnet"`` (4th place): every stage's feature map (ResNet layer1..4,
  DenseNet blocks, VGG pools, EfficientNet strides 4..32) through a
  squeeze-and-excitation block, globally pooled, concatenated, into one linear;
- ``decoder=True`` (4th place): a small decoder on the deepest map rebuilds the
  normalised input, for a second (MSE) loss via ``model(x, reconstruct=True)``;
- ``arch="branchnet"`` (NTU's baseline): trained from scratch, each channel in
  its own convolutional branch before shared layers; no pretrained weights,
  no adapter (the 4-channel stem inits have nothing to initialise and are ignored);
- ``extra_blocks=n`` (Stanford, ResNets only): n more stride-2 residual blocks
  after layer4, so large inputs are reduced further before pooling.
The plain linear head without a decoder keeps the torchvision model and its
state-dict keys unchanged; the other options run the backbone as a feature
extractor (``torchvision`` FX), which keeps the same module names.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.models.resnet import Bottleneck, conv1x1
from torchvision.ops import SqueezeExcitation

from .classes import NUM_CLASSES

STEMS = ("mean_rg", "copy_r", "zeros", "adapter")
HEADS = ("linear", "gapnet")
LOGITS = "logits"  # the extractor's output key for the linear head's logits


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BranchNet(nn.Module):
    """From-scratch baseline: each input channel convolved in its own branch, then shared layers.

    The branches are one grouped convolution stack (groups = channels), so no
    branch sees another channel until ``shared``; their BatchNorms normalise
    each channel's features separately.
    """

    def __init__(self, num_classes: int = 1000, channels: int = 4, widths=(16, 32, 64), shared=(256, 512)):
        super().__init__()
        stages, cin = [], channels
        for width in widths:
            stages.append(nn.Sequential(*conv_bn_relu(cin, width * channels, groups=channels), nn.MaxPool2d(2)))
            cin = width * channels
        self.branches = nn.Sequential(*stages)
        layers = []
        for i, width in enumerate(shared):
            layers += conv_bn_relu(cin, width) + ([nn.MaxPool2d(2)] if i < len(shared) - 1 else [])
            cin = width
        self.shared = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.avgpool(self.shared(self.branches(x)))
        return self.classifier(torch.flatten(x, 1))


# Config name -> constructor. Stem and head are found by structure (first
# 3-channel conv, last linear layer), so any torchvision classifier works.
SCRATCH = {"branchnet": BranchNet}  # no pretrained weights; four channels natively
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


def _named_children_of(module: nn.Module, kind: type, prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name, child in module.named_children() if isinstance(child, kind)]


# Per family, the graph nodes ending each stage (torchvision's node names),
# deepest (pre-pool) last: the GAPNet head's taps and the decoder's input.
STAGE_NODES = {
    tvm.ResNet: lambda m: ["layer1", "layer2", "layer3", "layer4"],
    # Block 4 is tapped after the final norm + ReLU, as the classifier sees it.
    tvm.DenseNet: lambda m: _named_children_of(m.features, tvm.densenet._DenseBlock, "features")[:-1] + ["relu"],
    tvm.VGG: lambda m: _named_children_of(m.features, nn.MaxPool2d, "features"),
    # The last block at output strides 4, 8, 16 and 32, like ResNet's layers.
    tvm.EfficientNet: lambda m: ["features.2", "features.3", "features.5", "features.8"],
    BranchNet: lambda m: [f"branches.{i}" for i in range(len(m.branches))] + ["shared"],
}


NORMALIZATIONS = ("dataset", "image")


class Normalize(nn.Module):
    """0..255 images -> standardised float, per channel.

    ``dataset``: by the training set's channel statistics. ``image``: each image's channel
    by its own mean and standard deviation. Exposure and antibody brightness vary from
    field to field (the green channel spans more than 4x in peak intensity), so with the
    dataset's statistics a dim image's pattern reaches the network as a faint one;
    standardising each image shows the pattern at the same contrast whatever the gain.
    """

    def __init__(self, mean, std, mode: str = "dataset"):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ValueError(f"normalize: {mode!r}; choose one of {list(NORMALIZATIONS)}")
        self.mode = mode
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, x):
        x = x.float()
        if self.mode == "dataset":
            return (x - self.mean) / self.std
        # +1 grey level: a blank channel (std 0) stays near 0 instead of amplifying its noise.
        return (x - x.mean((-2, -1), keepdim=True)) / (x.std((-2, -1), keepdim=True) + 1.0)


class GAPHead(nn.Module):
    """GAPNet head: each tapped map gated by squeeze-and-excitation, pooled, concatenated, one linear."""

    def __init__(self, nodes, channels, num_classes: int, dropout: float, se_reduction: int):
        super().__init__()
        self.nodes = tuple(nodes)
        self.se = nn.ModuleList(SqueezeExcitation(c, max(1, c // se_reduction)) for c in channels)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(sum(channels), num_classes))

    def pooled(self, features: dict) -> torch.Tensor:
        return torch.cat([se(features[n]).mean(dim=(2, 3)) for n, se in zip(self.nodes, self.se)], dim=1)

    def forward(self, features: dict) -> torch.Tensor:
        return self.classifier(self.pooled(features))


class Decoder(nn.Module):
    """Rebuilds the normalised input from the deepest map (the 4th place's reconstruction loss).

    A 1x1 squeeze, ``stages`` x (upsample x2, 3x3 conv-BN-ReLU) halving the
    width, a 1x1 conv to the image channels, then a bilinear resize to the
    input size, so any backbone stride and input size fit.
    """

    def __init__(self, node: str, in_channels: int, width: int = 128, stages: int = 4, out_channels: int = 4):
        super().__init__()
        self.node = node
        layers = conv_bn_relu(in_channels, width, kernel=1)
        for _ in range(stages):
            out = max(16, width // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), *conv_bn_relu(width, out)]
            width = out
        layers.append(nn.Conv2d(width, out_channels, kernel_size=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: dict, size) -> torch.Tensor:
        return F.interpolate(self.layers(features[self.node]), size=size, mode="bilinear", align_corners=False)


class HPANet(nn.Module):
    """Normalisation, optional 4->3 adapter, backbone; optional GAPNet head and decoder.

    Without either, ``backbone`` is the torchvision classifier with its last
    linear replaced, returning logits. With either, it is a feature extractor
    returning {node: map} (and the linear head's logits under ``LOGITS``).
    ``head_modules`` names the newly initialised submodules.
    """

    def __init__(self, backbone: nn.Module, head_modules, mean, std, adapter: nn.Module | None = None,
                 gap_head: GAPHead | None = None, decoder: Decoder | None = None, normalize: str = "dataset"):
        super().__init__()
        self.normalize = Normalize(mean, std, normalize)
        self.adapter = adapter
        self.backbone = backbone
        self.gap_head = gap_head
        self.decoder = decoder
        extra = [name for name in ("gap_head", "decoder") if getattr(self, name) is not None]
        self.head_modules = (*head_modules, *extra)

    def forward(self, x, reconstruct: bool = False):
        if reconstruct and self.decoder is None:
            raise ValueError("reconstruct=True needs a decoder: build the model with decoder=True")
        x = self.normalize(x)
        size = x.shape[-2:]
        if self.adapter is not None:
            x = self.adapter(x)
        out = self.backbone(x)
        if self.gap_head is None and self.decoder is None:
            return out
        logits = out[LOGITS] if self.gap_head is None else self.gap_head(out)
        return (logits, self.decoder(out, size)) if reconstruct else logits

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for name in self.head_modules for p in self.get_submodule(name).parameters()]

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
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}") from None
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


def stage_nodes(model: nn.Module) -> list[str]:
    try:
        find = STAGE_NODES[type(model)]
    except KeyError:
        known = sorted(t.__name__ for t in STAGE_NODES)
        raise ValueError(f"head='gapnet' and decoder need the stages of the backbone; "
                         f"{type(model).__name__} has none defined (known: {known})") from None
    return find(model)


@torch.no_grad()
def output_channels(extractor: nn.Module, nodes, in_channels: int) -> list[int]:
    """Channels of the extractor's outputs at ``nodes``, from one small forward pass in eval mode."""
    training = extractor.training
    out = extractor.eval()(torch.zeros(1, in_channels, 64, 64))
    extractor.train(training)
    return [out[n].shape[1] for n in nodes]


def check_options(arch: str, stem: str, head: str, se_reduction: int) -> None:
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {list(STEMS)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {list(HEADS)}")
    if se_reduction < 1:
        raise ValueError(f"se_reduction must be >= 1, got {se_reduction}")
    if arch in SCRATCH and stem == "adapter":
        raise ValueError(f"stem 'adapter' does not apply to arch {arch!r}: it takes the four channels "
                         f"natively, each in its own branch; leave stem at its default (ignored)")


def build_model(
    arch: str,
    mean=(0.0,) * 4,
    std=(1.0,) * 4,
    pretrained: str | None = None,
    dropout: float = 0.0,
    stem: str = "mean_rg",
    weights: str | None = None,
    num_classes: int = NUM_CLASSES,
    *,
    head: str = "linear",
    se_reduction: int = 16,
    extra_blocks: int = 0,
    decoder: bool = False,
    normalize: str = "dataset",
) -> HPANet:
    check_options(arch, stem, head, se_reduction)
    backbone = build_backbone(arch, pretrained, weights)
    adapter = rgb_adapter() if stem == "adapter" else None
    if adapter is None and arch not in SCRATCH:
        four_channel_stem(backbone, stem)
    new = add_extra_blocks(backbone, extra_blocks)
    if head == "linear":
        new.append(classification_head(backbone, num_classes, dropout))
    head_modules = [f"backbone.{name}" for name in new]
    if head == "linear" and not decoder:
        return HPANet(backbone, head_modules, mean, std, adapter, normalize=normalize)

    stages = stage_nodes(backbone)
    taps = stages if head == "gapnet" else stages[-1:]
    outputs = {node: node for node in taps}
    if head == "linear":
        outputs[new[-1]] = LOGITS
    # Train and eval graphs differ by design (dropout, stochastic depth); the
    # returned module switches between them with .train()/.eval().
    extractor = create_feature_extractor(backbone, outputs, suppress_diff_warning=True)
    channels = output_channels(extractor, taps, 4 if adapter is None else 3)
    gap_head = GAPHead(taps, channels, num_classes, dropout, se_reduction) if head == "gapnet" else None
    recon = Decoder(stages[-1], channels[-1]) if decoder else None
    return HPANet(extractor, head_modules, mean, std, adapter, gap_head, recon, normalize)

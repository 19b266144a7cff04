"""What goes around a backbone: input normalisation, the GAPNet head, the decoder, and ``HPANet``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.ops import SqueezeExcitation

from hpa.models.branchnet import BranchNet, conv_bn_relu

LOGITS = "logits"  # the extractor's output key for the linear head's logits


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
    """Rebuilds the normalised input (``out_channels``: its channels) from the deepest map (the 4th place's
    reconstruction loss).

    A 1x1 squeeze, ``stages`` x (upsample x2, 3x3 conv-BN-ReLU) halving the
    width, a 1x1 conv to the image channels, then a bilinear resize to the
    input size, so any backbone stride and input size fit.
    """

    def __init__(self, node: str, in_channels: int, width: int = 128, stages: int = 4, *, out_channels: int):
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
    """Normalisation, optional C->3 adapter, backbone; optional GAPNet head and decoder.

    Without either, ``backbone`` is the torchvision (or timm) classifier with its
    last linear replaced, returning logits. With either, it is a feature extractor
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

"""A finer feature grid for class maps without retraining: a ResNet's last stages run without their stride.

ResNet18 at the demo's 64 px ends on a 2x2 grid (stride 32), too coarse to point at a cell.
``dilated(model, stages)`` copies the model with the stride-2 convolutions of its last
``stages`` stages set to stride 1, and every 3x3 convolution after them dilated (and padded)
to match (the DeepLab way): the deepest map is 2**stages times finer, and its values at every
2**stages-th position are the original model's map exactly (so are its class activation maps
there); the positions in between are the same network evaluated half a (coarse) step over. No
weight changes. Pooled, the finer map gives logits close to, not equal to, the original's (and
Grad-CAM's channel weights, mean gradients over the map, change with them): use it for where,
the original for what.
Cost: stage 4 of a ResNet18 runs on 4x the positions (about 1.7x the whole model), stages 3
and 4 on 4x and 16x (about 5x).
"""

from __future__ import annotations

import copy

from torch import nn

from hpa.models.heads import HPANet

STAGES = ("layer1", "layer2", "layer3", "layer4")


def _stage(backbone: nn.Module, name: str) -> nn.Module | None:
    try:
        return backbone.get_submodule(name)
    except AttributeError:
        return None


def dilated(model: HPANet, stages: int = 1) -> HPANet:
    """A copy of ``model`` (a ResNet, torchvision's or timm's, any head) whose last ``stages`` stages keep their input's
    grid; ``stages=0`` returns ``model`` itself."""
    if not 0 <= stages <= 3:
        raise ValueError(f"dilate: {stages} stages; give 0 to 3 (the last stages of layer1..layer4)")
    if stages == 0:
        return model
    body = model.backbone.model if hasattr(model.backbone, "model") else model.backbone  # timm bodies wrap it
    found = [_stage(body, name) for name in STAGES]
    if any(stage is None for stage in found):
        raise ValueError(f"dilate applies to ResNets (stages {', '.join(STAGES)}), not to this "
                         f"{type(body).__name__}; use dilate: 0")
    copied = copy.deepcopy(model)
    body = copied.backbone.model if hasattr(copied.backbone, "model") else copied.backbone
    rate = 1
    for name in STAGES[len(STAGES) - stages:]:
        convs = [m for m in body.get_submodule(name).modules() if isinstance(m, nn.Conv2d)]
        finer = rate * 2
        for conv in convs:
            strided = conv.stride != (1, 1)
            conv.stride = (1, 1)
            if conv.kernel_size != (1, 1):
                # The strided conv reads its (already finer) input at the old rate; all after it at the new one.
                _dilate(conv, rate if strided else finer)
        rate = finer
    return copied


def _dilate(conv: nn.Conv2d, rate: int) -> None:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"dilate needs explicitly zero-padded convolutions, got padding {conv.padding!r} "
                         f"({conv.padding_mode})")
    conv.dilation = (rate, rate)
    conv.padding = tuple(rate * (k // 2) for k in conv.kernel_size)

"""A classifier cut where its class maps are read: the body (image -> deepest feature map) and the head
(that map -> logits), for every model ``build_model`` makes.

Class activation mapping proper needs a head that is global average pooling then one linear
layer (dropout aside, off in eval mode): class c's logit is then the mean over the map of
w_c . A + b_c, so w_c . A is class c's map, exactly, from one forward pass. ``Split.linear`` is
that layer where the head has this form, None where it has not (GAPNet's head of gated, pooled
taps; VGG's MLP); those get gradient-weighted maps over the same feature map.

The cut is made by calling the model's own modules in its own order, not by hooks: inside the
FX-traced extractors (GAPNet, decoder) a stage such as ``layer4`` is inlined and never called,
so a hook on it would never fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from hpa.models.branchnet import BranchNet
from hpa.models.heads import HPANet

Body = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]
Head = Callable[[torch.Tensor, dict], torch.Tensor]


@dataclass
class Split:
    """``body(x)`` -> (map (n, k, h, w), context); ``head(map, context)`` -> logits, or None where the logits come
    only with the body (``context[LOGITS]``). ``linear``: the head's one linear layer after average pooling, or
    None; ``exact``: whether the architecture guarantees that form (else it is a candidate, checked on the data)."""

    body: Body
    head: Head | None
    linear: nn.Linear | None
    exact: bool


def last_linear(module: nn.Module) -> nn.Linear:
    return [m for m in module.modules() if isinstance(m, nn.Linear)][-1]


def _resnet_features(m: tvm.ResNet, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    return m.layer4(m.layer3(m.layer2(m.layer1(x))))


# torchvision (and the branch CNN) classifiers: (their deepest map, their pooling, their classifier, GAP + linear?).
CLASSIFIERS = {
    tvm.ResNet: (_resnet_features, lambda m: m.avgpool, lambda m: m.fc, True),
    tvm.DenseNet: (lambda m, x: F.relu(m.features(x)), lambda m: nn.AdaptiveAvgPool2d(1), lambda m: m.classifier, True),
    tvm.EfficientNet: (lambda m, x: m.features(x), lambda m: m.avgpool, lambda m: m.classifier, True),
    tvm.VGG: (lambda m, x: m.features(x), lambda m: m.avgpool, lambda m: m.classifier, False),
    BranchNet: (lambda m, x: m.shared(m.branches(x)), lambda m: m.avgpool, lambda m: m.classifier, True),
}


def _stem(model: HPANet, x):
    x = model.normalize(x)
    return model.adapter(x) if model.adapter is not None else x


def _no_2d_map(shape) -> ValueError:
    return ValueError(f"class maps need a 2-D feature map, but the model's features have shape {tuple(shape)} "
                      f"(tokens, not a map); use head: gapnet, whose timm stage maps are 2-D")


def _classifier_split(model: HPANet) -> Split:
    net = model.backbone
    if type(net) in CLASSIFIERS:
        features, pool, classifier, gap_linear = CLASSIFIERS[type(net)]
        pool, classifier = pool(net), classifier(net)
        return Split(lambda x: (features(net, _stem(model, x)), {}),
                     lambda a, _: classifier(torch.flatten(pool(a), 1)),
                     last_linear(classifier) if gap_linear else None, gap_linear)
    if hasattr(net, "forward_features") and hasattr(net, "forward_head"):  # timm
        def body(x):
            a = net.forward_features(_stem(model, x))
            if a.ndim != 4:
                raise _no_2d_map(a.shape)
            return a, {}
        classifier = net.get_classifier()
        # timm heads vary (pooling kinds, a norm after pooling): a linear classifier is a candidate only.
        return Split(body, lambda a, _: net.forward_head(a), classifier if isinstance(classifier, nn.Linear) else None,
                     False)
    raise ValueError(f"no class maps for a {type(net).__name__} backbone: hpa.models.anatomy knows "
                     f"{sorted(t.__name__ for t in CLASSIFIERS)} and timm models")


def split_model(model: HPANet) -> Split:
    """Where ``model``'s class maps are read (see the module's note)."""
    if not isinstance(model, HPANet):
        raise TypeError(f"class maps need an HPANet (hpa.models.factory.build_model), got {type(model).__name__}")
    if model.gap_head is None and model.decoder is None:
        return _classifier_split(model)
    if model.gap_head is not None:  # GAPNet: the deepest tap, the others held fixed
        last = model.gap_head.nodes[-1]
        return Split(lambda x: _deepest(model, x, last), lambda a, ctx: model.gap_head({**ctx, last: a}), None, False)
    # A linear head with a decoder: the extractor returns the deepest map beside the logits.
    last = model.decoder.node
    net = model.backbone
    head = (lambda a, _: net.model.forward_head(a)) if hasattr(net, "model") else None  # timm's, else inside FX
    return Split(lambda x: _deepest(model, x, last), head, last_linear(net), False)


def _deepest(model: HPANet, x, node: str):
    out = model.backbone(_stem(model, x))
    if out[node].ndim != 4:
        raise _no_2d_map(out[node].shape)
    return out[node], out


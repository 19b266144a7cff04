"""Class maps: where in an image a trained model sees each class, at its feature grid, over the TTA views.

- ``cam`` (class activation mapping proper): where the head is global average pooling then one
  linear layer (torchvision ResNets, DenseNets, EfficientNets, the branch CNN, timm models whose
  head checks out), class c's map is w_c . A over the deepest feature map A; its mean plus b_c is
  the logit. Exact, one forward pass, no gradients: a few lines, so written here.
- ``gradcam`` (gradient-weighted, Selvaraju et al. 2017): for any other head (GAPNet's gated taps,
  VGG's MLP), each channel of A weighted by the mean gradient of the class's logit over it,
  by captum's ``LayerGradCam`` on the head alone (the body runs once, each class costs one pass
  of the head). On a pooled linear head it equals ``cam`` / (h w).

Both are clipped at 0 (evidence for the class, as Grad-CAM does), in the model's units (logit per
position for ``cam``), not rescaled per image: a map ranks places within an image, and classes
of one image stay comparable. Each dihedral view's map is brought back through that view's
inverse before the views are averaged, as ``hpa.inference.tta`` averages probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from captum.attr import LayerGradCam
from torch import nn

from hpa.dihedral import dihedral, dihedral_inverse
from hpa.models.anatomy import Split, split_model
from hpa.models.heads import LOGITS

METHODS = ("auto", "cam", "gradcam")


def class_maps(model, images, classes: Sequence[int] | None = None, views: Sequence[int] = (0,), *,
               method: str = "auto") -> np.ndarray:
    """Maps of ``classes`` (all by default) for a batch of images (n, C, H, W; uint8 or 0..255 float), averaged
    over dihedral ``views``: (n, len(classes), h, w) float16 at the model's feature grid (``hpa.cells.scores``
    upsamples it). ``method``: ``cam``, ``gradcam`` or ``auto`` (``cam`` where the head allows)."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}; choose one of {list(METHODS)}")
    if not views:
        raise ValueError("views is empty: give at least the identity, (0,)")
    split = split_model(model)
    model.eval()
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images).to(device)
    if x.ndim != 4:
        raise ValueError(f"images: a batch (n, channels, height, width), got shape {tuple(x.shape)}")
    total = 0
    for t in views:
        total = total + dihedral_inverse(view_maps(split, dihedral(x, t), classes, method), t)
    return (total / len(views)).cpu().numpy().astype(np.float16)


def view_maps(split: Split, x: torch.Tensor, classes, method: str) -> torch.Tensor:
    """Non-negative maps (n, k, h, w) float32 of one view, in that view's frame."""
    with torch.no_grad():
        a, context = split.body(x)
        a = a.float()
        n_classes = (split.linear.out_features if split.linear is not None else
                     _logits(split, a, context).shape[1])
    classes = list(range(n_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < n_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range: the model has {n_classes} classes (0..{n_classes - 1})")
    if method != "gradcam" and split.linear is not None:
        maps = linear_maps(split, a, context)
        if maps is not None:
            return maps[:, classes].clamp(min=0)
        if split.exact or method == "cam":
            raise RuntimeError("the head's logits are not the mean of its class activation maps plus the bias: "
                               "hpa.models.anatomy cut this model wrongly")
    elif method == "cam":
        raise ValueError("method 'cam' needs a head that is average pooling then one linear layer; this model's is "
                         "not (GAPNet, VGG, some timm heads): use 'gradcam' or 'auto'")
    return grad_maps(split, a, context, classes)


def _logits(split: Split, a, context) -> torch.Tensor:
    return (split.head(a, context) if split.head is not None else context[LOGITS]).float()


def linear_maps(split: Split, a: torch.Tensor, context) -> torch.Tensor | None:
    """Every class's w_c . A, or None where their means plus the bias are not the model's logits."""
    weight, bias = split.linear.weight.float(), split.linear.bias
    if weight.shape[1] != a.shape[1]:  # a linear layer, but not on the pooled map (VGG's MLP)
        return None
    with torch.no_grad():
        maps = torch.einsum("ck,nkhw->nchw", weight, a)
        implied = maps.mean(dim=(2, 3)) + (0 if bias is None else bias.float())
        logits = _logits(split, a, context)
    scale = 1.0 + logits.abs().max().item() if logits.numel() else 1.0
    return maps if torch.allclose(implied, logits, rtol=1e-4, atol=1e-4 * scale) else None


def grad_maps(split: Split, a: torch.Tensor, context, classes) -> torch.Tensor:
    """Grad-CAM of each class over ``a`` through the head alone, by captum."""
    if split.head is None:
        raise ValueError("gradient-weighted maps need the head apart from the body, which this model (a VGG with a "
                         "decoder, traced as one graph) does not give; train it without reconstruction_weight")
    tap = nn.Identity()  # captum reads the map and its gradient where this layer passes it on
    gradcam = LayerGradCam(lambda m: split.head(tap(m), context), tap)
    with torch.enable_grad():
        maps = [gradcam.attribute(a, target=c, relu_attributions=True) for c in classes]
    return torch.cat(maps, dim=1).detach().float() if maps else a.new_zeros((a.shape[0], 0, *a.shape[2:]))

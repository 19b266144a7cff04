"""Multi-label losses on logits (n, classes), by config name.

The competition's top teams trained on losses closer to the macro-F1 metric
than plain BCE: focal loss (1st place, with Lovász hinge and hard-example-
mined BCE), soft F1 (4th), BCE weighted toward rare classes. A config may
combine several with weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hpa.config.spec import TrainConfig


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): BCE scaled by (1 - p_t)^gamma, optionally alpha-balanced."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits, targets):
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = bce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss.mean()


class WeightedBCE(nn.Module):
    """BCE with a per-class positive weight, so rare classes' positives count more."""

    def __init__(self, pos_weight):
        super().__init__()
        self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))

    def forward(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight)


class SoftF1Loss(nn.Module):
    """1 - macro F1 computed with probabilities in place of 0/1 predictions, over the batch."""

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = eps

    def forward(self, logits, targets):
        p = torch.sigmoid(logits)
        tp = (p * targets).sum(0)
        fp = (p * (1 - targets)).sum(0)
        fn = ((1 - p) * targets).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        return 1 - f1.mean()


def lovasz_hinge_per_class(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``lovasz_hinge_flat`` of every column of (n, classes) at once: one sort and one cumsum along the batch.

    A loop over the classes costs ~25 tiny device ops each between forward and backward; this is ~15 in all.
    """
    if logits.shape[0] == 0:
        return logits.sum(0) * 0.0
    errors = 1.0 - logits * (2.0 * targets - 1.0)
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    gt_sorted = targets.to(errors.dtype).gather(0, perm)
    gts = gt_sorted.sum(0)
    jaccard = 1.0 - (gts - gt_sorted.cumsum(0)) / (gts + (1 - gt_sorted).cumsum(0))
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)
    return (F.relu(errors_sorted) * grad).sum(0)


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge (Berman et al. 2018) over a flat vector of logits and 0/1 labels."""
    return lovasz_hinge_per_class(logits[:, None], labels[:, None])[0]


class LovaszHinge(nn.Module):
    """Lovász hinge per class over the batch, averaged: a convex surrogate of each class's Jaccard index."""

    def forward(self, logits, targets):
        return lovasz_hinge_per_class(logits, targets).mean()


class HardBCE(nn.Module):
    """BCE averaged over only the hardest ``fraction`` of the batch x classes terms (online hard example mining).

    Keeps round(fraction * terms) terms, at least one; the rest get no gradient.
    """

    def __init__(self, fraction: float = 0.1):
        super().__init__()
        if not 0 < fraction <= 1:
            raise ValueError(f"hard_fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def forward(self, logits, targets):
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten()
        k = max(1, round(self.fraction * bce.numel()))
        return bce.topk(k).values.mean()


class WeightedSum(nn.Module):
    def __init__(self, parts: dict[str, tuple[float, nn.Module]]):
        super().__init__()
        self.weights = {name: w for name, (w, _) in parts.items()}
        self.parts = nn.ModuleDict({name: m for name, (_, m) in parts.items()})

    def forward(self, logits, targets):
        return sum(self.weights[name] * m(logits, targets) for name, m in self.parts.items())


def pos_weights(y, power: float = 0.5, cap: float = 50.0) -> torch.Tensor:
    """Per-class positive weight (negatives / positives) ** power, capped; 1 for absent classes."""
    y = torch.as_tensor(y, dtype=torch.float32)
    pos = y.sum(0)
    ratio = torch.where(pos > 0, (len(y) - pos) / pos.clamp(min=1), torch.ones_like(pos))
    return ratio.clamp(min=1.0).pow(power).clamp(max=cap)


# The model keys the losses read (build_loss's params).
LOSS_KEYS = ("focal_gamma", "focal_alpha", "pos_weight_power", "hard_fraction")

LOSSES = {
    "bce": lambda p, y: nn.BCEWithLogitsLoss(),
    "weighted_bce": lambda p, y: WeightedBCE(pos_weights(y, p["pos_weight_power"])),
    "focal": lambda p, y: FocalLoss(p["focal_gamma"], p["focal_alpha"]),
    "soft_f1": lambda p, y: SoftF1Loss(),
    "lovasz": lambda p, y: LovaszHinge(),
    "hard_bce": lambda p, y: HardBCE(p["hard_fraction"]),
}


def build_loss(spec: str | dict[str, float], params: dict | None = None, y_train=None) -> nn.Module:
    """A loss from its config: a name, or {name: weight} for a weighted sum.

    ``params`` holds the losses' settings (focal_gamma, focal_alpha,
    pos_weight_power, hard_fraction); ``y_train`` the training labels weighted BCE needs.
    """
    defaults = TrainConfig()  # the schema's defaults (tests/test_config.py)
    params = {**{k: getattr(defaults, k) for k in LOSS_KEYS}, **(params or {})}
    weights = {spec: 1.0} if isinstance(spec, str) else dict(spec)
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown or not weights:
        raise ValueError(f"unknown loss {unknown or spec!r}; choose from {sorted(LOSSES)}")
    parts = {name: (float(w), LOSSES[name](params, y_train)) for name, w in weights.items()}
    if len(parts) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(parts.values()))[1]
    return WeightedSum(parts)

"""Metric learning for label transfer: an ArcFace embedding of whole images.

The 1st place of the Kaggle HPA competition trained a ResNet with ArcFace
(additive angular margin) and gave a test image the labels of its nearest
training image when their cosine similarity was high enough: many test fields
of view have near-twins among the training and HPAv18 images, and copying
their curated labels beats a classifier there (``hpa.postprocess.transfer`` does the search).

ArcFace needs one class per image, but an HPA image has a label *set*, so the
class here is the label set itself (the Target string): images with identical
label sets are the positives, every other label set a negative. Label sets with
fewer than ``min_class_size`` images among the fold's training rows are left
out of the ArcFace training (a one-image class has no positive pair and would
only be memorised); those images are still embedded and searched. (The 1st
place used antibody identities, which the Kaggle images do not carry.)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from hpa.config.spec import EmbeddingConfig
from hpa.models.factory import build_model
from hpa.runtime.checkpoint import checkpoint_vocabulary, read_checkpoint
from hpa.runtime.device import pick_device


class ArcMarginProduct(nn.Module):
    """ArcFace logits: s·cos(θ_y + m) for the target class y, s·cos θ_j for every other class j.

    θ_j is the angle between the normalised embedding and class j's normalised
    weight. Past θ + m > π, cos(θ + m) would rise again and reward a worse
    angle, so there the target logit continues linearly as cos θ − m·sin m
    (``th``, ``mm``); with ``easy_margin`` the margin only applies where cos θ > 0.
    """

    def __init__(self, dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.5,
                 easy_margin: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale, self.easy_margin = scale, easy_margin
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.th, self.mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.linear(F.normalize(x.float()), F.normalize(self.weight)).clamp(-1.0, 1.0)
        if labels is None:
            return self.scale * cos
        sin = torch.sqrt((1.0 - cos * cos).clamp(0.0, 1.0))
        phi = cos * self.cos_m - sin * self.sin_m
        phi = torch.where(cos > 0, phi, cos) if self.easy_margin else torch.where(cos > self.th, phi, cos - self.mm)
        target = F.one_hot(labels, cos.shape[1]).bool()
        return self.scale * torch.where(target, phi, cos)


class EmbeddingNet(nn.Module):
    """A ``hpa.models.factory`` network whose head is the embedding layer, then BatchNorm (as the 1st place's)."""

    def __init__(self, net: nn.Module, dim: int):
        super().__init__()
        self.net, self.neck = net, nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.neck(self.net(x))

    def head_parameters(self) -> list[nn.Parameter]:
        return self.net.head_parameters() + list(self.neck.parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        return self.net.body_parameters()


class ArcFaceNet(nn.Module):
    """Embedding network and ArcFace classifier, trained together; only the embedder is kept for search."""

    def __init__(self, embedder: EmbeddingNet, arc: ArcMarginProduct):
        super().__init__()
        self.embedder, self.arc = embedder, arc

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ArcFace logits, with the margin where ``labels`` are given; the embedding). The ArcFace
        cosines are computed in fp32 whatever the autocast: they are compared at a margin of 0.5 rad."""
        embedding = self.embedder(x).float()
        with torch.autocast(x.device.type, enabled=False):
            return self.arc(embedding, labels), embedding

    def head_parameters(self) -> list[nn.Parameter]:
        return self.embedder.head_parameters() + list(self.arc.parameters())

    def body_parameters(self) -> list[nn.Parameter]:
        return self.embedder.body_parameters()


def build_embedder(cfg: EmbeddingConfig, stats: dict, vocabulary, *, load_weights: bool = True) -> EmbeddingNet:
    """The embedding network for the channels of ``vocabulary``; ``load_weights=False`` when a checkpoint's
    state dict follows."""
    net = build_model(cfg.arch, stats["mean"], stats["std"],
                      pretrained=cfg.pretrained if load_weights else None, dropout=cfg.dropout,
                      stem=cfg.stem, weights=cfg.weights if load_weights else None, num_classes=cfg.dim,
                      rgb_source=vocabulary.rgb_source())
    return EmbeddingNet(net, cfg.dim)


def label_set_classes(label_sets, min_class_size: int) -> tuple[list[str], np.ndarray]:
    """ArcFace classes (label sets with at least ``min_class_size`` images) and each image's class, -1 if left out."""
    counts = pd.Series(list(label_sets)).value_counts()
    classes = sorted(counts.index[counts >= min_class_size])
    lookup = {s: k for k, s in enumerate(classes)}
    return classes, np.array([lookup.get(s, -1) for s in label_sets], dtype=np.int64)


def load_embedder(path, device=None) -> tuple[EmbeddingNet, dict]:
    """Rebuild the embedding network from its checkpoint alone (config and statistics inside)."""
    device = device or pick_device()
    ckpt = read_checkpoint(path, device)
    model = build_embedder(EmbeddingConfig.from_dict(ckpt["config"]["embedding"]), ckpt["config"]["stats"],
                           checkpoint_vocabulary(ckpt["config"]), load_weights=False)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt

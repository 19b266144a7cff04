"""NTU's from-scratch baseline: each channel in its own convolutional branch before shared layers."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BranchNet(nn.Module):
    """From-scratch baseline: each input channel convolved in its own branch, then shared layers.

    The branches are one grouped convolution stack (groups = channels), so no
    branch sees another channel until ``shared``; their BatchNorms normalise
    each channel's features separately.
    """

    def __init__(self, num_classes: int = 1000, *, channels: int, widths=(16, 32, 64), shared=(256, 512)):
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

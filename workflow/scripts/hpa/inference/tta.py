"""Test-time augmentation: a model's probabilities averaged (or maxed) over dihedral views."""

from __future__ import annotations

import numpy as np
import torch

from hpa.classes import NUM_CLASSES
from hpa.dihedral import dihedral, transforms_for


@torch.no_grad()
def predict_probs(model, batches, device, tta: str = "flips", aggregate: str = "mean",
                  amp: torch.dtype | None = None) -> np.ndarray:
    """Sigmoid probabilities over ``batches`` of uint8 images, aggregated over TTA views.

    ``amp``: the autocast dtype the model trained with (None: fp32).
    """
    model.eval()
    views = transforms_for(tta)
    out = []
    for x in batches:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            p = torch.stack([torch.sigmoid(model(dihedral(x, t)).float()) for t in views])
        out.append((p.mean(0) if aggregate == "mean" else p.amax(0)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), dtype=np.float32)

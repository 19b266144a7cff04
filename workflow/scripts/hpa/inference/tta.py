"""Test-time augmentation: a model's outputs on dihedral views of each batch, and their aggregates.

``view_outputs`` is the one inference loop: predicting, embedding and predicting new
images all run it, with the precision the model trained in (``amp``), channels_last on
CUDA, and whatever loader (and workers) feeds it. Probabilities can be kept per view
(``predict_views``), so mean or max over any subset of views is recombined later
without running the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from hpa.crops import crop_boxes, take
from hpa.dihedral import dihedral, transforms_for

AGGREGATES = {"mean": lambda p: p.mean(0), "max": lambda p: p.amax(0)}
# Images per forward when a batch's views are stacked: one forward (and one normalisation) for all
# the views of a predict batch of 32, in bounded memory for larger batches and crop grids.
MAX_STACKED = 256


@torch.no_grad()
def view_outputs(model, batches, device: torch.device, views: Sequence[int], *, amp: torch.dtype | None = None,
                 finish: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid, crop: int | None = None,
                 grid: str = "none") -> Iterator[torch.Tensor]:
    """For each batch of uint8 images: ``finish(model(view))`` in float32 for each crop of ``grid``
    (``crop`` px; the whole image without) and each dihedral view, stacked crop-major: (C * V, b, k)."""
    model.eval()
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    for x in batches:
        x = x.to(device, non_blocking=True)
        inputs = [dihedral(take(x, box, crop), t) for box in crop_boxes(x.shape[-1], crop, grid) for t in views]
        per_forward = max(1, MAX_STACKED // max(1, len(x)))
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = [finish(model(torch.cat(inputs[i : i + per_forward]).contiguous(memory_format=memory_format)).float())
                   for i in range(0, len(inputs), per_forward)]
        yield torch.cat(out).view(len(inputs), len(x), -1)


def read_back(outputs, device: torch.device) -> list[np.ndarray]:
    """Each device result copied to the host without waiting (into pinned memory on CUDA), so the next
    batch is queued behind it; one wait once all are queued, then the arrays."""
    host = [p.to("cpu", non_blocking=True) for p in outputs]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return [h.numpy() for h in host]


def predict_views(model, batches, device, views: Sequence[int], amp: torch.dtype | None = None, *,
                  n_classes: int, crop: int | None = None, grid: str = "none") -> np.ndarray:
    """Sigmoid probabilities on each crop and view: (C * len(views), images, ``n_classes``) float32,
    crop-major (``n_classes``, the model's outputs, shapes the result when there are no images)."""
    out = read_back(view_outputs(model, batches, device, views, amp=amp, crop=crop, grid=grid), device)
    if out:
        return np.concatenate(out, axis=1)
    return np.zeros((len(views), 0, n_classes), dtype=np.float32)


def predict_probs(model, batches, device, tta: str = "flips", aggregate: str = "mean",
                  amp: torch.dtype | None = None, *, n_classes: int, crop: int | None = None,
                  grid: str = "none") -> np.ndarray:
    """Sigmoid probabilities over ``batches``, aggregated over the crops and TTA views: (images,
    ``n_classes``) float32."""
    reduce = AGGREGATES[aggregate]
    outputs = view_outputs(model, batches, device, transforms_for(tta), amp=amp, crop=crop, grid=grid)
    out = read_back((reduce(p) for p in outputs), device)
    return np.concatenate(out) if out else np.zeros((0, n_classes), dtype=np.float32)

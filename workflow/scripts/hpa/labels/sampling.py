"""Rare-class oversampling weights (numpy only: the label analysis writes them, training draws with them)."""

from __future__ import annotations

import numpy as np


def class_weights(counts, power: float = 0.5, cap: float = 20.0) -> np.ndarray:
    """weight_c = min(cap, (f_max / f_c) ** power); an absent class gets the cap.

    The most frequent class weighs 1; power 0 leaves the distribution alone,
    power 1 evens the class frequencies out (up to the cap).
    """
    counts = np.asarray(counts, dtype=float)
    ratio = np.full(len(counts), np.inf)
    present = counts > 0
    ratio[present] = counts.max() / counts[present]
    return np.minimum(cap, ratio**power)


def image_weights(y: np.ndarray, weights) -> np.ndarray:
    """An image is drawn as often as its rarest class asks: the max of its classes' weights."""
    w = np.where(np.asarray(y, dtype=bool), np.asarray(weights, dtype=float)[None, :], 0.0)
    per_image = w.max(axis=1)
    return np.where(per_image > 0, per_image, 1.0)  # an unlabelled image keeps the base rate

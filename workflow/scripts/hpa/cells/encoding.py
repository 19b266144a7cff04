"""The 2021 competition's submission format: ``ID,ImageWidth,ImageHeight,PredictionString``.

A PredictionString holds, for each cell and class, the triple ``class confidence mask``
separated by spaces; ``mask`` is the cell's binary mask as the competition's starter code
encoded it and its evaluation (the Open Images challenge tools) decodes it: COCO's
compressed run-length counts (pycocotools ``mask.encode`` of a Fortran-ordered uint8 mask),
zlib-compressed at the best level, base64-encoded. The same cell's mask string repeats in
each of its triples, as the format requires.
"""

from __future__ import annotations

import base64
import warnings
import zlib

import numpy as np
from pycocotools import mask as coco_mask

COLUMNS = ["ID", "ImageWidth", "ImageHeight", "PredictionString"]


def rle_counts(binary: np.ndarray) -> bytes:
    """COCO's compressed RLE string of a 2-D binary mask (runs down the columns, as COCO reads them)."""
    binary = np.asarray(binary)
    if binary.ndim != 2:
        raise ValueError(f"a cell mask is 2-D, got shape {binary.shape}")
    return coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))["counts"]


def encode_mask(binary: np.ndarray) -> str:
    """One cell's mask as the competition's PredictionString holds it."""
    return base64.b64encode(zlib.compress(rle_counts(binary), zlib.Z_BEST_COMPRESSION)).decode("ascii")


def decode_mask(text: str, height: int, width: int) -> np.ndarray:
    """Bool (height, width) mask from ``encode_mask``'s string (as the evaluation decodes it)."""
    counts = zlib.decompress(base64.b64decode(text))
    with warnings.catch_warnings():  # pycocotools 2.0.11 calls np.array(copy=False) the numpy-1 way
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode({"size": [int(height), int(width)], "counts": counts}).astype(bool)


def prediction_string(mask: np.ndarray, ids, scores: np.ndarray, min_score: float = 0.0) -> str:
    """Triples ``class confidence mask`` for each cell ``ids[k]`` of the label image ``mask`` and each
    class whose score ``scores[k, class]`` is at least ``min_score``; cells in the order given,
    classes ascending. Each cell's mask is encoded once."""
    scores = np.asarray(scores, float)
    if scores.ndim != 2 or len(scores) != len(ids):
        raise ValueError(f"scores must be (cells={len(ids)}, n_classes), got shape {scores.shape}")
    mask = np.asarray(mask)
    triples = []
    for k, cell in enumerate(ids):
        keep = np.flatnonzero(scores[k] >= min_score)
        if len(keep):
            code = encode_mask(mask == cell)
            triples += [f"{c} {scores[k, c]:.6g} {code}" for c in keep]
    return " ".join(triples)


def submission_row(image_id: str, mask: np.ndarray, ids, scores: np.ndarray, min_score: float = 0.0) -> dict:
    """One row of the 2021 submission for an image and its cells' scores."""
    height, width = np.shape(mask)
    return {"ID": image_id, "ImageWidth": width, "ImageHeight": height,
            "PredictionString": prediction_string(mask, ids, scores, min_score)}


def parse_prediction_string(text: str, height: int, width: int) -> list[tuple[int, float, np.ndarray]]:
    """(class, confidence, bool mask) triples of a PredictionString; ValueError naming the bad part."""
    parts = text.split() if isinstance(text, str) else []
    if len(parts) % 3:
        raise ValueError(f"a PredictionString holds triples 'class confidence mask', got {len(parts)} fields")
    out, decoded = [], {}
    for k in range(0, len(parts), 3):
        label, confidence, code = parts[k:k + 3]
        try:
            if code not in decoded:
                decoded[code] = decode_mask(code, height, width)
            out.append((int(label), float(confidence), decoded[code]))
        except (ValueError, zlib.error) as err:
            raise ValueError(f"triple {k // 3 + 1} ({label} {confidence} ...): {err}") from err
    return out

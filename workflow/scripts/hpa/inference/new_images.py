"""Ensembles on new images (the ``predict_new`` rule): decode a folder once, run every checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hpa import thresholds as th
from hpa.classes import CHANNELS, CLASS_NAMES, NUM_CLASSES
from hpa.data.images import EXTENSIONS, BitDepth, channel_problem, list_channels, load_image
from hpa.inference.tta import predict_probs
from hpa.runtime.checkpoint import load_checkpoint
from hpa.runtime.device import autocast_dtype, pick_device
from hpa.runtime.loader import CachedImages, make_loader
from hpa.tables import matrix_to_labels, probability_table

log = logging.getLogger(__name__)


def list_images(folder) -> tuple[list[str], list[tuple[str, str]]]:
    """Ids with one file for each of the four channels in ``folder``, and (Id, problem) for the rest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder; set new_images to a folder of {{Id}}_{{color}} "
                                f"images ({'/'.join(EXTENSIONS)})")
    problems = {image_id: channel_problem(image_id, files) for image_id, files in list_channels(folder).items()}
    complete = sorted(i for i, problem in problems.items() if not problem)
    broken = sorted((i, problem) for i, problem in problems.items() if problem)
    return complete, broken


def predict_folder(folder, checkpoints: dict[str, list[str]], combination: dict, record: dict,
                   tta: str, aggregate: str, batch_size: int = 32, depth: BitDepth = BitDepth(),
                   crops: str = "none") -> pd.DataFrame:
    """Run a trained ensemble on a folder of 4-channel images of any size and format, without retraining.

    16-bit images come to 8 bits by ``depth``, the rule the training cache used.
    Each model's folds are averaged, models combined as the ensemble was
    (``combination.json``), then the ensemble's thresholds applied.
    """
    device = pick_device()
    ids, broken = list_images(folder)
    for image_id, problem in broken:
        log.warning("skipping %s: %s", image_id, problem)
    per_model, decoded = {}, {}
    for name, paths in checkpoints.items():
        fold_probs = []
        for path in paths:
            model, ckpt = load_checkpoint(path, device)
            size = ckpt["config"]["image_size"]
            if size not in decoded:  # once per image size, not once per checkpoint
                decoded[size] = _load_all(folder, ids, size, depth)
            images, ok = decoded[size]
            loader = make_loader(CachedImages(images, np.flatnonzero(ok)), batch_size)
            probs = np.full((len(ids), NUM_CLASSES), np.nan)
            probs[ok] = predict_probs(model, loader, device, tta=tta, aggregate=aggregate,
                                      amp=autocast_dtype(device, ckpt["config"]["model"].get("amp")),
                                      crop=ckpt["config"].get("crop"), grid=crops)
            fold_probs.append(probs)
        per_model[name] = np.mean(fold_probs, axis=0)
    names = list(per_model)
    if combination["combine"] == "groups":
        source = [names.index(combination["sources"][c]) for c in CLASS_NAMES]
        blended = np.stack([per_model[names[source[k]]][:, k] for k in range(NUM_CLASSES)], 1)
    else:
        weights = combination["weights"]
        blended = sum(weights[m] * per_model[m] for m in names)
    ok = ~np.isnan(blended).any(axis=1)
    pred = np.zeros_like(blended, dtype=bool)
    pred[ok] = th.predict(blended[ok], record["thresholds"], record.get("top1", False))
    table = probability_table(ids, np.nan_to_num(blended, nan=0.0))
    table["ok"] = ok
    table["Predicted"] = matrix_to_labels(pred)
    table["Predicted_names"] = ["; ".join(CLASS_NAMES[k] for k in np.flatnonzero(row)) for row in pred]
    missing = pd.DataFrame({"Id": [i for i, _ in broken], "ok": False, "Predicted": "", "Predicted_names": ""})
    return pd.concat([table, missing], ignore_index=True)


def _load_all(folder, ids, size, depth: BitDepth) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image at ``size``; an unreadable one is flagged, not fatal."""
    images = np.zeros((len(ids), len(CHANNELS), size, size), dtype=np.uint8)
    ok = np.ones(len(ids), dtype=bool)
    for i, image_id in enumerate(ids):
        try:
            images[i] = load_image(folder, image_id, size, depth)
        except Exception as err:  # one broken file must not stop the batch
            log.warning("skipping %s: %s", image_id, err)
            ok[i] = False
    return images, ok

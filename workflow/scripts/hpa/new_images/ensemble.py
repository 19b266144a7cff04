"""A trained ensemble on new images (the ``predict_new`` rule), through the submission's blend and thresholds.

Each checkpoint's probabilities are rounded and its folds averaged as the fold tables
are (``probability_table``, ``average_folds``), the models blended by the ensemble's
``combination.json`` (``apply_combination``) and thresholded by ``predict_classes``:
on the images of the competition's test folder the table therefore equals the
submission row for row. What each threshold method does on a folder is
``predict_classes``'s rule, with ``images_to_match`` as the folder size (config/README.md).
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd

from hpa.classes import Vocabulary
from hpa.data.clipping import Clipping, note
from hpa.data.images import BitDepth
from hpa.inference.tta import predict_probs
from hpa.new_images.folder import batches, list_images
from hpa.postprocess.blend import apply_combination, average_folds
from hpa.postprocess.submission import images_to_match, predict_classes
from hpa.runtime.checkpoint import checkpoint_vocabulary, load_checkpoint
from hpa.runtime.device import autocast_dtype, pick_device
from hpa.runtime.loader import CachedImages, make_loader
from hpa.tables import matrix_to_labels, prob_columns_of, prob_matrix, probability_table

log = logging.getLogger(__name__)


def load_members(checkpoints: dict[str, list[str]], device) -> tuple[dict, Vocabulary]:
    """Every checkpoint of the ensemble ({model: [(net, checkpoint)]}) and the vocabulary they share;
    checkpoints that disagree in classes or channels are refused, naming both."""
    models = {name: [load_checkpoint(path, device) for path in paths] for name, paths in checkpoints.items()}
    seen = [(path, checkpoint_vocabulary(ckpt["config"]))
            for name, paths in checkpoints.items() for path, (_, ckpt) in zip(paths, models[name])]
    first_path, vocabulary = seen[0]
    for path, other in seen[1:]:
        for what in ("classes", "channels"):
            if getattr(other, what) != getattr(vocabulary, what):
                raise ValueError(f"the ensemble's checkpoints disagree in their {what}: {first_path} has "
                                 f"{list(getattr(vocabulary, what))}, {path} has {list(getattr(other, what))}; "
                                 "ensemble models trained on one dataset")
    return models, vocabulary


def fold_probabilities(files, ids, models: dict, vocabulary: Vocabulary, *, tta: str, aggregate: str, batch_size: int,
                       depth, crops: str, batch: int, workers: int, fit: str, clipping: Clipping = Clipping(),
                       clipped: dict | None = None):
    """Every checkpoint's probabilities on the decodable ``ids``, reading ``batch`` images at a time.

    Returns (decoded Ids, {model: [one (n, classes) array per fold]}, [(Id, reason)] of the undecodable).
    """
    device = pick_device()
    sizes = {ckpt["config"]["image_size"] for loaded in models.values() for _, ckpt in loaded}
    done, failed = [], []
    parts = {name: [[] for _ in loaded] for name, loaded in models.items()}
    for good, arrays, bad in batches(files, ids, vocabulary.channels, sizes, depth, batch, workers, fit,
                                     clipping, clipped):
        done += good
        failed += bad
        for name, loaded in models.items():
            for out, (model, ckpt) in zip(parts[name], loaded):
                size = ckpt["config"]["image_size"]
                loader = make_loader(CachedImages(arrays[size], np.arange(len(good))), batch_size)
                out.append(predict_probs(model, loader, device, tta=tta, aggregate=aggregate,
                                         amp=autocast_dtype(device, ckpt["config"]["model"].get("amp")),
                                         n_classes=vocabulary.n_classes,
                                         crop=ckpt["config"].get("crop"), grid=crops))
        log.info("%d of %d images predicted", len(done) + len(failed), len(ids))
    stacked = {name: [np.concatenate(p) if p else np.zeros((0, vocabulary.n_classes)) for p in per_fold]
               for name, per_fold in parts.items()}
    return done, stacked, failed


def as_written(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (Id index) as a CSV file gives it back: float32 probabilities become the float64 of their
    shortest decimal, which is what blend averages on the workflow's side."""
    return pd.read_csv(io.StringIO(table.to_csv(index=False)), dtype={"Id": str}).set_index("Id")


def blended_probabilities(folder, checkpoints: dict[str, list[str]], combination: dict, *, tta: str,
                          aggregate: str, batch_size: int = 32, depth=BitDepth(), crops: str = "none",
                          batch: int = 256, workers: int = 1, fit: str = "pad", clipping: Clipping = Clipping(),
                          clipped: dict | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]], Vocabulary]:
    """The ensemble's probability table (``Id,p0..``) of the folder's usable images, (Id, reason)
    of the skipped ones, and the vocabulary of its checkpoints.

    ``checkpoints``: {model: its folds' model.pt}, in the ensemble's order; ``combination``:
    its combination.json; ``depth`` (one rule or {channel: rule}, bit_depth.json's) and ``fit``
    as the cache decoded the training images; ``clipped`` ({Id: rows}) receives the channels that
    rule clips (``clipping``). The folder's files must carry the checkpoints' channel names. Memory
    holds one ``batch`` of images, and one probability per class, image and checkpoint.
    """
    models, vocabulary = load_members(checkpoints, pick_device())
    files, broken = list_images(folder, vocabulary.channels)
    ids = list(files)
    if not ids:  # nothing to decode: the table is empty, with a column per class
        per_fold = {name: [np.zeros((0, vocabulary.n_classes))] * len(loaded) for name, loaded in models.items()}
        done, failed = [], []
    else:
        done, per_fold, failed = fold_probabilities(files, ids, models, vocabulary, tta=tta,
                                                    aggregate=aggregate, batch_size=batch_size, depth=depth,
                                                    crops=crops, batch=batch, workers=workers, fit=fit,
                                                    clipping=clipping, clipped=clipped)
    for image_id, reason in broken + failed:
        log.warning("skipping %s: %s", image_id, reason)
    # Each fold's table as the workflow writes and reads it, averaged and blended as blend does, then
    # rounded as test.csv is: the submission's probabilities to the last bit.
    per_model = {name: average_folds([as_written(probability_table(done, p)) for p in folds]).loc[done]
                 .to_numpy() for name, folds in per_fold.items()}
    return probability_table(done, apply_combination(per_model, combination)), broken + failed, vocabulary


def classify(table: pd.DataFrame, skipped: list[tuple[str, str]], vocabulary: Vocabulary, record: dict,
             min_images: int | None = None) -> pd.DataFrame:
    """The predict_new table: one row per Id with its probabilities, one column ``p_{class name}`` per class
    of ``vocabulary``, ``ok``, the ``reason`` it was skipped, where its ``thresholds`` came from, and its
    classes (``Predicted`` as indices, ``Predicted_names``).

    ``table``: ``blended_probabilities``'s (``Id,p0..``); ``record``: the ensemble's thresholds json,
    applied by the submission's ``predict_classes``; match_distribution matches rates on at least
    ``min_images`` images (default: ``images_to_match``).
    """
    if min_images is None:  # only match_distribution reads it
        min_images = images_to_match(record["train_frequency"]) if record["method"] == "match_distribution" else 0
    probs = prob_columns_of(table)
    if len(probs) != vocabulary.n_classes:
        raise ValueError(f"{len(probs)} probability columns for the {vocabulary.n_classes} classes of the checkpoints")
    pred, source = predict_classes(prob_matrix(table), record, min_images)
    log.info("%d images predicted, %d skipped; thresholds: %s", len(table), len(skipped), source)
    table = table.assign(ok=True, reason="", thresholds=source, Predicted=matrix_to_labels(pred),
                         Predicted_names=[vocabulary.names_of(np.flatnonzero(row)) for row in pred])
    rows = [{"Id": i, "ok": False, "reason": why, "thresholds": "", "Predicted": "", "Predicted_names": ""}
            for i, why in skipped]
    if rows:  # their probabilities are left empty
        table = pd.concat([table, pd.DataFrame(rows).reindex(columns=table.columns)], ignore_index=True)
    named = dict(zip(probs, (f"p_{name}" for name in vocabulary.classes)))
    return table.astype(dict.fromkeys(probs, float)).sort_values("Id", ignore_index=True).rename(columns=named)


def predict_folder(folder, checkpoints: dict[str, list[str]], combination: dict, record: dict, *,
                   min_images: int | None = None, clipped: dict | None = None, **options) -> pd.DataFrame:
    """A trained ensemble on a folder of images of any size and format, named ``{Id}_{channel}.{ext}`` by its
    checkpoints' channels, without retraining: ``classify`` of ``blended_probabilities`` (``options`` are
    the latter's), with a ``clipped`` column naming the channels the bit-depth rule clipped (also left
    in ``clipped``, {Id: rows}, when given)."""
    clipped = {} if clipped is None else clipped
    table, skipped, vocabulary = blended_probabilities(folder, checkpoints, combination, clipped=clipped, **options)
    table = classify(table, skipped, vocabulary, record, min_images)
    # Each image's channels the bit-depth rule clipped: its prediction is of a distorted image.
    return table.assign(clipped=[note(clipped.get(i, [])) for i in table["Id"]])

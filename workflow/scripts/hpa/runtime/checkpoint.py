"""Checkpoints as plain data: written so that ``torch.load``'s safe default opens them, read only that way.

``model.pt`` and ``last.pt`` hold tensors, dicts, lists, strings and numbers, nothing else:
``torch.load(path)`` (``weights_only=True`` since PyTorch 2.6) opens them, and a file that
needs the pickle machinery (which can run any code while loading) is refused by name. A
checkpoint from a colleague or a model zoo is then as safe to open as a table.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from hpa.classes import HPA, Vocabulary
from hpa.files import atomic_path
from hpa.models.factory import build_from_config
from hpa.runtime.device import pick_device

CONVERT = "python -m hpa.loop.convert_checkpoint"


def plain(value):
    """``value`` with numpy scalars as Python numbers and numpy arrays as tensors (what the safe load opens)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(payload: dict, path) -> None:
    """Write ``payload`` as plain data to ``path``, atomically (a killed job leaves the old file whole)."""
    with atomic_path(path) as tmp:
        torch.save(plain(payload), tmp)


def read_checkpoint(path, device=None) -> dict:
    """The checkpoint at ``path``, opened the safe way; a file carrying pickled objects is refused by name."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: refused, it carries pickled Python objects, which can run code when opened ({reason}). "
            f"This pipeline's checkpoints hold plain data only. One written by an older version of it, and "
            f"only if you trust where it came from, converts in place with `{CONVERT} {path}`; a last.pt can "
            f"instead be deleted (its fold then trains from the start)."
        ) from None


def checkpoint_vocabulary(config: dict) -> Vocabulary:
    """The classes and channels (and RGB map) a checkpoint's model was trained on, from its ``config``.

    Checkpoints written before they were recorded (no ``vocabulary`` key) can only be the 2018
    task's: its 28 HPA classes and 4 channels red, green, blue, yellow, which is what they load as.
    """
    recorded = config.get("vocabulary")
    return HPA if recorded is None else Vocabulary.from_json(recorded)


def load_checkpoint(path, device=None) -> tuple[torch.nn.Module, dict]:
    """Rebuild a classifier from its checkpoint alone: its config carries arch, statistics and vocabulary."""
    device = device or pick_device()
    ckpt = read_checkpoint(path, device)
    try:
        config = ckpt["config"]
        model = build_from_config(config["model"], config["stats"], checkpoint_vocabulary(config), pretrained=False)
    except KeyError as missing:
        raise ValueError(f"{Path(path)}: its config has no {missing} key; it was not written by this "
                         f"pipeline's train rule (or by a much older one): retrain the model") from None
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt

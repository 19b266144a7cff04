"""The network a model's training config (``hpa.spec.TrainConfig``) describes, and its stages by epoch."""

from __future__ import annotations

import hashlib
import json

from hpa.models.factory import build_model
# The settings themselves live torch-free in hpa.spec, where common.smk checks them at DAG time.
from hpa.spec import KEEP, RUNTIME_KEYS, LoopConfig, TrainConfig  # noqa: F401 (re-exported)


def stage_at(stages: list[tuple[int, str | dict, float]], epoch: int) -> int:
    """Index of the stage (from ``TrainConfig.stage_losses``) that ``epoch`` belongs to."""
    return max(i for i, (first, _, _) in enumerate(stages) if first <= epoch)


def build_from_config(cfg: TrainConfig, stats: dict, *, pretrained: bool = True):
    """The model a config describes; ``pretrained=False`` skips weights a checkpoint will replace."""
    return build_model(
        cfg.arch, stats["mean"], stats["std"], cfg.pretrained if pretrained else None, cfg.dropout,
        cfg.stem, cfg.weights if pretrained else None, head=cfg.head, se_reduction=cfg.se_reduction,
        extra_blocks=cfg.extra_blocks, decoder=cfg.reconstruction_weight > 0, normalize=cfg.normalize,
    )

def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

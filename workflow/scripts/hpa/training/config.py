"""A model's training config (``hpa.config.spec.TrainConfig``, re-exported here) and its stages by epoch."""

from __future__ import annotations

# The settings themselves live torch-free in hpa.config.spec, where common.smk checks them at DAG time.


def stage_at(stages: list[tuple[int, str | dict, float]], epoch: int) -> int:
    """Index of the stage (from ``TrainConfig.stage_losses``) that ``epoch`` belongs to."""
    return max(i for i, (first, _, _) in enumerate(stages) if first <= epoch)

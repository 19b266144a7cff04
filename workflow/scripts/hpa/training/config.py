"""A model's training config: one entry under ``models:`` (the loop's keys come from ``LoopConfig``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hpa.loop.config import LoopConfig
from hpa.runtime import distributed
from hpa.runtime.distributed import Ranks


@dataclass
class TrainConfig(LoopConfig):
    """One entry under ``models:`` in the config: the network, its loss, and which epoch to keep."""

    arch: str = "resnet18"
    pretrained: str | None = None
    weights: str | None = None
    stem: str = "mean_rg"
    normalize: str = "dataset"
    dropout: float = 0.0
    head: str = "linear"
    se_reduction: int = 16
    extra_blocks: int = 0
    reconstruction_weight: float = 0.0
    loss: str | dict = "bce"
    stages: list = field(default_factory=list)
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    pos_weight_power: float = 0.5
    hard_fraction: float = 0.1
    patience: int | None = None
    keep: str = "last"
    validate_every: int = 1
    oversample: bool = False
    processes: int = 1

    @classmethod
    def unknown_keys(cls, unknown: list[str]) -> str:
        return f"unknown model key(s) {unknown}; known: {sorted(cls.known_keys())}"

    def check(self) -> None:
        super().check()
        self.stage_losses()  # fail at config time, not after hours of the first stage
        if self.keep not in KEEP:
            raise ValueError(f"keep: {self.keep!r}; choose one of {list(KEEP)}")
        if self.validate_every < 1 or (self.validate_every > 1 and self.keep == "best"):
            raise ValueError(f"validate_every: {self.validate_every}; give 1, or more with keep: last "
                             "(keep: best must see every epoch's validation score)")
        if self.patience is not None and self.keep != "best":
            raise ValueError("patience stops at the best validation epoch, so it needs keep: best "
                             "(keep: last trains a fixed number of epochs)")
        distributed.check_batch_size(self.batch_size, Ranks(world=self.processes))

    def stage_losses(self) -> list[tuple[int, str | dict, float]]:
        """(first epoch, loss, lr multiplier) of each training stage; one stage unless ``stages`` is set.

        Each stage but the last says how many epochs it lasts; the last runs to ``epochs``.
        """
        if not self.stages:
            return [(1, self.loss, 1.0)]
        starts, first = [], 1
        for i, stage in enumerate(self.stages):
            unknown = set(stage) - {"loss", "epochs", "lr_mult"}
            if unknown or "loss" not in stage:
                raise ValueError(f"stages[{i}]: give loss (and epochs, lr_mult); unknown keys {sorted(unknown)}")
            starts.append((first, stage["loss"], float(stage.get("lr_mult", 1.0))))
            if i < len(self.stages) - 1:
                first += int(stage.get("epochs", 0))
        if first > self.epochs:
            raise ValueError(
                f"stages: the stages before the last last until epoch {first - 1}, but epochs is "
                f"{self.epochs}; raise epochs or shorten the stages"
            )
        return starts


def stage_at(stages: list[tuple[int, str | dict, float]], epoch: int) -> int:
    """Index of the stage (from ``TrainConfig.stage_losses``) that ``epoch`` belongs to."""
    return max(i for i, (first, _, _) in enumerate(stages) if first <= epoch)


# Which epoch a fold keeps. "best" picks it by validation macro F1 at thresholds fitted on
# that same fold, the images whose OOF probabilities later fit the thresholds and make the
# honest estimate: a selection those numbers cannot see. "last" (a fixed epoch count, the
# end of a cosine or one-cycle schedule) leaves the OOF images unseen by any choice.
KEEP = ("last", "best")

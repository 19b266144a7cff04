"""The settings a model, the embedding and their training loop read, without torch.

``common.smk`` builds these from the config when the workflow starts, so that a setting
that cannot work fails in seconds under ``snakemake -n`` rather than hours later in a train
job; the jobs build the same classes from the same dicts. Every error names the key as
section.name.key, the problem and the fix. Defaults match the schema
(``workflow/schemas/config.schema.yaml``); tests/test_config.py checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Keys that change how fast a model trains, not what it learns (x-runtime-only in the schema):
# a checkpoint written with one value resumes under another.
RUNTIME_KEYS = ("compile",)

# Which epoch a fold keeps. "best" picks it by validation macro F1 at thresholds fitted on
# that same fold, the images whose OOF probabilities later fit the thresholds and make the
# honest estimate: a selection those numbers cannot see. "last" (a fixed epoch count, the
# end of a cosine or one-cycle schedule) leaves the OOF images unseen by any choice.
KEEP = ("last", "best")

# Architectures trained from scratch on the four channels natively (hpa.models.backbones.SCRATCH):
# no pretrained weights, and no stem to adapt.
SCRATCH_ARCHS = ("branchnet",)

STAGE_KEYS = ("loss", "epochs", "lr_mult")


def refuse(where: str | None, error: ValueError) -> ValueError:
    """``error`` (its message starts with the key) prefixed with the section and name that hold the key."""
    return ValueError(f"{where}.{error}") if where else error


def check_batch_size(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise ValueError(
            f"batch_size: {batch_size} is the global batch and must divide evenly over "
            f"{processes} processes; set batch_size to a multiple of processes"
        )


@dataclass
class AugmentConfig:
    dihedral: bool = True
    rotate: float = 0.0  # max degrees, uniform in [-rotate, rotate]
    zoom: tuple[float, float] = (1.0, 1.0)  # >1 crops in (random position), <1 zooms out
    brightness: float = 0.0  # per-channel gain in [1 - b, 1 + b]
    contrast: float = 0.0  # per-channel contrast factor in [1 - c, 1 + c]
    crop_scale: tuple[float, float] = (1.0, 1.0)  # random rescale before the crop (data.cache_size only)

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"augment: unknown key(s) {unknown}; config/README.md lists the known ones")
        for key in ("zoom", "crop_scale"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def geometric(self) -> bool:
        return self.rotate > 0 or self.zoom != (1.0, 1.0)


@dataclass
class LoopConfig:
    """The keys a classifier (``models:``) and the embedding share ($defs/training in the schema):
    the backbone's weights and stem, and the training loop's keys."""

    pretrained: str | None = None
    weights: str | None = None
    stem: str = "mean_rg"
    dropout: float = 0.0
    optimizer: str = "adam"
    lr: float = 1e-3
    body_lr_mult: float = 1.0
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 10
    step_gamma: float = 0.1
    epochs: int = 5
    batch_size: int = 32
    accumulate: int = 1
    clip_grad_norm: float | None = None
    freeze_epochs: int = 0
    augment: dict = field(default_factory=lambda: dataclasses.asdict(AugmentConfig()))
    amp: str | None = None
    channels_last: bool = True
    compile: bool = False
    processes: int = 1
    seed: int = 0

    def learning_keys(self) -> dict:
        """The config without its runtime-only keys: what a resumed run must share with the saved one."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_KEYS}

    @classmethod
    def known_keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def unknown_keys(cls, unknown: list[str]) -> str:
        return f"{', '.join(unknown)}: unknown key(s); known: {sorted(cls.known_keys())}"

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        """The config of a dict from the config file: unknown keys and settings that cannot work refused by name.

        ``where`` (``models.<name>``, ``embedding``) prefixes every error, so that it names section.name.key.
        """
        try:
            unknown = set(d) - cls.known_keys()
            if unknown:
                raise ValueError(cls.unknown_keys(sorted(unknown)))
            cfg = cls(**d)
            cfg.check()
        except ValueError as error:
            raise refuse(where, error) from None
        return cfg

    def check(self) -> None:
        """Normalise ``augment`` and refuse loop settings that cannot work, by key."""
        self.augment = dataclasses.asdict(AugmentConfig.from_dict(self.augment))
        if self.accumulate < 1:
            raise ValueError(f"accumulate: {self.accumulate}; give 1 or more batches per update")
        check_batch_size(self.batch_size, self.processes)


@dataclass
class TrainConfig(LoopConfig):
    """One entry under ``models:`` in the config: the network, its loss, and which epoch to keep."""

    arch: str = "resnet18"
    normalize: str = "dataset"
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

    def check(self) -> None:
        super().check()
        self.stage_losses()  # fail at config time, not after hours of the first stage
        if self.keep not in KEEP:
            raise ValueError(f"keep: {self.keep!r}; choose one of {list(KEEP)}")
        if self.validate_every < 1 or (self.validate_every > 1 and self.keep == "best"):
            raise ValueError(f"validate_every: {self.validate_every}; give 1, or more with keep: last "
                             "(keep: best must see every epoch's validation score)")
        if self.patience is not None and self.keep != "best":
            raise ValueError(f"patience: {self.patience} stops at the best validation epoch, so it needs "
                             "keep: best (keep: last trains a fixed number of epochs)")
        if self.arch in SCRATCH_ARCHS and (self.pretrained is not None or self.weights):
            raise ValueError(f"pretrained: arch {self.arch!r} has no pretrained weights (it trains from "
                             "scratch); set pretrained: null and no weights")

    def stage_losses(self) -> list[tuple[int, str | dict, float]]:
        """(first epoch, loss, lr multiplier) of each training stage; one stage unless ``stages`` is set.

        Each stage but the last says how many epochs it lasts; the last runs to ``epochs``.
        """
        if not self.stages:
            return [(1, self.loss, 1.0)]
        starts, first = [], 1
        for i, stage in enumerate(self.stages):
            unknown = set(stage) - set(STAGE_KEYS)
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

    def loss_names(self) -> set[str]:
        """Every loss this model trains with, in any stage."""
        specs = [loss for _, loss, _ in self.stage_losses()]
        return {name for spec in specs for name in ([spec] if isinstance(spec, str) else spec)}


@dataclass
class EmbeddingConfig(LoopConfig):
    """The training keys of the config's ``embedding:`` section; the loop's keys come from ``LoopConfig``."""

    arch: str = "resnet50"
    dim: int = 512
    margin: float = 0.5
    scale: float = 30.0
    easy_margin: bool = False
    min_class_size: int = 2
    epochs: int = 10

"""The keys the training loop reads, shared by a classifier (``models:``) and the embedding (``embedding:``)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from hpa.loop.augment import AugmentConfig

# Keys that change how fast a model trains, not what it learns (x-runtime-only in the schema):
# a checkpoint written with one value resumes under another.
RUNTIME_KEYS = ("compile",)


@dataclass
class LoopConfig:
    """The keys the training loop reads, shared by a classifier (``models:``) and the embedding.

    Defaults match the schema (``workflow/schemas/config.schema.yaml``); tests/test_config.py checks.
    """

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
    seed: int = 0

    def learning_keys(self) -> dict:
        """The config without its runtime-only keys: what a resumed run must share with the saved one."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in RUNTIME_KEYS}

    @classmethod
    def known_keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def unknown_keys(cls, unknown: list[str]) -> str:
        return f"unknown key(s) {unknown}; known: {sorted(cls.known_keys())}"

    @classmethod
    def from_dict(cls, d: dict):
        """The config of a dict from the config file: unknown keys and settings that cannot work refused by name."""
        unknown = set(d) - cls.known_keys()
        if unknown:
            raise ValueError(cls.unknown_keys(sorted(unknown)))
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Normalise ``augment`` and refuse loop settings that cannot work, by key."""
        self.augment = dataclasses.asdict(AugmentConfig.from_dict(self.augment))
        if self.accumulate < 1:
            raise ValueError(f"accumulate: {self.accumulate}; give 1 or more batches per update")


def config_digest(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

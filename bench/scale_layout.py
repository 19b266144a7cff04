"""Where the scale run's files live, shared by the generator (``scale_data``) and the stages.

Kept free of heavy imports: every stage process imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # image px: pixel content does not change what the timed stages do per image
MODELS, FOLDS = ("resnet34", "densenet121"), 5


@dataclass(frozen=True)
class Layout:
    """Where a scale run's files live under its working folder."""

    root: Path

    @property
    def kaggle(self) -> Path:
        return self.root / "kaggle"

    @property
    def external(self) -> Path:
        return self.root / "external"

    @property
    def results(self) -> Path:
        return self.root / "results"


def member_paths(layout: Layout) -> dict[str, dict[str, list[Path]]]:
    """{model: {"oof": [...], "test": [...]}}: the per-fold probability tables ``blend`` reads."""
    folder = layout.results / "predictions"
    return {m: {kind: [folder / m / f"{kind}_fold{k}.csv" for k in range(FOLDS)] for kind in ("oof", "test")}
            for m in MODELS}


def embedding_paths(layout: Layout) -> list[Path]:
    return [layout.results / "embedding" / f"fold{k}.npz" for k in range(FOLDS)]

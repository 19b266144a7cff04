import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_HPA = REPO.parent / "shared" / "data" / "hpa"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def write_kaggle_source(root: Path, train: dict[str, str], test: list[str], size: int = 16, seed: int = 0):
    """A tiny Kaggle-layout folder with random 8-bit channel PNGs."""
    gen = np.random.default_rng(seed)
    for split, ids in (("train", list(train)), ("test", test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for image_id in ids:
            for color in ("red", "green", "blue", "yellow"):
                plane = gen.integers(0, 256, (size, size), dtype=np.uint8)
                Image.fromarray(plane).save(root / split / f"{image_id}_{color}.png")
    (root / "train.csv").write_text("Id,Target\n" + "".join(f"{i},{t}\n" for i, t in train.items()))
    (root / "sample_submission.csv").write_text("Id,Predicted\n" + "".join(f"{i},0\n" for i in test))
    return root


@pytest.fixture
def kaggle_source(tmp_path):
    train = {f"tr{i:02d}": " ".join(map(str, sorted({i % 28, (i * 7) % 28}))) for i in range(12)}
    return write_kaggle_source(tmp_path / "kaggle", train, [f"te{i:02d}" for i in range(5)])

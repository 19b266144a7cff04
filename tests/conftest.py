import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
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


# The smallest demo that runs every stage, in about a minute on 2 cores.
TINY = {
    "source": "demo",
    "demo": {"n_train": 36, "n_test": 12, "size": 48, "seed": 3, "min_per_class": 1, "mirror": {"n": 40, "size": 96}},
    "external": {"use": True, "list": "resources/demo/mirror/list.csv", "base_url": "file:resources/demo/mirror/images",
                 "size": 48, "workers": 2, "retries": 1, "backoff": 0.01, "rate": 0},
    "data": {"image_size": 32},
    "folds": {"n": 2},
    "models": {"tiny": {"arch": "resnet18", "epochs": 1, "batch_size": 8}},
    "ensembles": {"main": {"models": ["tiny"], "tta": "flips"}},
}


def snakemake(workdir, *args, check=True, configfile="config.yaml"):
    """Run the real Snakefile in workdir on 2 cores; raise with its output if it fails and check is set."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / configfile), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the "Job stats" table Snakemake prints (empty when nothing runs)."""
    counts = {}
    lines = output.split("Job stats:\n", 1)[1].splitlines()[2:] if "Job stats:" in output else []
    for line in lines:
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    counts.pop("all", None)
    return counts


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """TINY run to completion once per session. Tests only read it (dry runs may use another --configfile)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY))
    result = snakemake(workdir)
    (workdir / "terminal.txt").write_text(result.stdout)  # the run's last words (tests/test_summary.py)
    return workdir


@pytest.fixture
def kaggle_source(tmp_path):
    train = {f"tr{i:02d}": " ".join(map(str, sorted({i % 28, (i * 7) % 28}))) for i in range(12)}
    return write_kaggle_source(tmp_path / "kaggle", train, [f"te{i:02d}" for i in range(5)])

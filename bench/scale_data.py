"""Generated inputs of the scale run: a Kaggle-layout dataset, an HPAv18-like list, probabilities, embeddings.

Pixels do not change how long a stage takes at 32 px, so every channel file is a
hard link to one of a pool of distinct random planes: writing 100k images costs
one link per file. Each channel picks its plane independently, so images differ
(their hashes do not fall into one giant duplicate cluster) although files repeat.
Label sets follow the real distribution: the real Kaggle and HPAv18 lists when
``../shared/data/hpa`` has them, else the Kaggle label-set counts shipped with
the package (``hpa/resources/label_sets.csv``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from hpa.classes import CHANNELS, HPA
from hpa.data.images import channel_path
from hpa.demo.dataset import demo_id, sample_label_sets
from hpa.embedding.neighbours import write_embeddings
from hpa.external.dedup import hash_plane, summary_columns
from hpa.external.download import RECORD_COLUMNS
from hpa.files import write_csv
from hpa.tables import format_target, labels_to_matrix, probability_table, read_labels, read_manifest

from .scale_layout import REPO, SIZE, Layout, embedding_paths, member_paths

SHARED_HPA = REPO.parent / "shared" / "data" / "hpa"

# The real sizes: Kaggle train.csv, sample_submission.csv and the HPAv18RBGY_wodpl list.
REAL = {"train": 31_072, "test": 11_702, "external": 74_606}
POOL = 4096
EMBEDDING_DIM = 512

# Shares of the external list that duplicate a train, test or external image (by hash), so that
# cleaning has clusters to decide and leaks to report; illustrative, not measured shares.
DUPLICATE_SHARE = {"train": 0.03, "test": 0.005, "external": 0.02}
FAILED_SHARE = 0.01  # downloads that ended "failed" (timed out past the retries)


def split_sizes(n: int | str) -> dict[str, int]:
    """Train, test and external counts: the real ones, or ``n`` images in the real proportions."""
    if n == "real":
        return dict(REAL)
    total = sum(REAL.values())
    train, test = round(n * REAL["train"] / total), round(n * REAL["test"] / total)
    return {"train": max(train, 10), "test": max(test, 2), "external": max(n - train - test, 10)}


def real_label_sets(path: Path, n: int, rng: np.random.Generator) -> list[str] | None:
    """``n`` Target strings drawn from a real labels file (without replacement while it lasts)."""
    if not path.is_file():
        return None
    targets = read_labels(path, HPA)["Target"].to_numpy()
    picks = rng.permutation(len(targets))[:n] if n <= len(targets) else rng.choice(len(targets), n)
    return targets[picks].tolist()


def label_sets(source: str, n: int, rng: np.random.Generator) -> list[str]:
    real = {"train": SHARED_HPA / "train.csv", "external": SHARED_HPA / "HPAv18RBGY_wodpl.csv"}[source]
    return real_label_sets(real, n, rng) or [format_target(s) for s in sample_label_sets(n, rng)]


def write_pool(folder: Path, size: int, rng: np.random.Generator) -> tuple[list[Path], np.ndarray]:
    """``size`` distinct random 32 px PNG planes, and each one's pHash (as a uint64)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, hashes = [], []
    for k in range(size):
        plane = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
        paths.append(folder / f"{k}.png")
        Image.fromarray(plane).save(paths[-1], compress_level=1)
        hashes.append(int(hash_plane(plane, "phash"), 16))
    return paths, np.array(hashes, dtype=np.uint64)


def link_images(folder: Path, ids, pool: list[Path], rng: np.random.Generator) -> np.ndarray:
    """Each image's four channels as hard links into the pool; returns the (n, 4) planes chosen."""
    folder.mkdir(parents=True, exist_ok=True)
    picks = rng.integers(0, len(pool), size=(len(ids), len(CHANNELS)))
    for image_id, row in zip(ids, picks):
        for color, k in zip(CHANNELS, row):
            os.link(pool[k], channel_path(folder, image_id, color))
    return picks


def hex_codes(codes: np.ndarray) -> np.ndarray:
    return np.array([f"{int(c):016x}" for c in codes.ravel()]).reshape(codes.shape)


def download_records(ids, source_codes: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    """What ``download_external`` would have recorded: status, and the hash and std of each channel.

    Most images get random hashes; shares of them copy a train, test or earlier external
    image's hashes with one bit flipped per channel (well within the 12-bit dedup distance).
    """
    n = len(ids)
    codes = rng.integers(0, 2**64, size=(n, len(CHANNELS)), dtype=np.uint64)
    start = 0
    for kind, share in DUPLICATE_SHARE.items():
        k = int(share * n)
        rows = np.arange(start, start + k)
        donors = source_codes[kind] if kind != "external" else codes[: max(start, 1)]
        codes[rows] = donors[rng.integers(0, len(donors), size=k)]
        flips = rng.integers(0, 64, size=(k, len(CHANNELS))).astype(np.uint64)
        codes[rows] ^= np.uint64(1) << flips
        start += k
    order = rng.permutation(n)  # spread the duplicates through the list
    codes = codes[order]
    status = np.where(rng.random(n) < FAILED_SHARE, "failed", "ok")
    table = pd.DataFrame({"Id": ids, "status": status, "bytes": 4 * 1200, "attempts": 1,
                          "error": np.where(status == "ok", "", "Transient: timed out")})
    hashes, stds = hex_codes(codes), rng.uniform(10, 80, size=codes.shape).round(3)
    summary = {}
    for c, color in enumerate(CHANNELS):
        summary[f"phash_{color}"] = np.where(status == "ok", hashes[:, c], "")
        summary[f"std_{color}"] = np.where(status == "ok", stds[:, c], np.nan)
    table = table.assign(**summary)
    return table[RECORD_COLUMNS + summary_columns("phash")]


def external_ids(n: int) -> list[str]:
    """HPA-style image Ids (folder_plate_well_field), distinct."""
    return [f"{10000 + i // 400}_{1000 + i % 400 // 4}_C1_{i % 4 + 1}" for i in range(n)]


def write_dataset(layout: Layout, n, seed: int = 0) -> None:
    """The Kaggle folder, the external list, its images and its download records."""
    rng = np.random.default_rng(seed)
    sizes = split_sizes(n)
    pool, pool_hashes = write_pool(layout.root / "pool", min(POOL, sum(sizes.values())), rng)
    codes = {}
    for split in ("train", "test"):
        ids = sorted({demo_id(rng) for _ in range(int(sizes[split] * 1.01) + 10)})[: sizes[split]]
        picks = link_images(layout.kaggle / split, ids, pool, rng)
        codes[split] = pool_hashes[picks]
        if split == "train":
            write_csv(pd.DataFrame({"Id": ids, "Target": label_sets("train", len(ids), rng)}),
                      layout.kaggle / "train.csv")
        else:
            write_csv(pd.DataFrame({"Id": ids, "Predicted": "0"}), layout.kaggle / "sample_submission.csv")
    ids = external_ids(sizes["external"])
    link_images(layout.external / "images", ids, pool, rng)
    write_csv(pd.DataFrame({"Id": ids, "Target": label_sets("external", len(ids), rng)}),
              layout.external / "list.csv")
    write_csv(download_records(ids, codes, rng), layout.external / "download.csv")


def informative_probs(y: np.ndarray, rng: np.random.Generator, skill: float = 1.5) -> np.ndarray:
    """Probabilities that rank positives above negatives, as a trained model's would (imperfectly)."""
    logits = rng.normal(-2.0, 1.0, size=y.shape) + 2 * skill * y
    return 1 / (1 + np.exp(-logits))


def write_probabilities(layout: Layout, seed: int = 0) -> None:
    """Each model's per-fold OOF and test probability tables, as ``predict`` writes them."""
    rng = np.random.default_rng(seed)
    train = read_manifest(layout.results / "manifest.csv", split="train")
    test = read_manifest(layout.results / "manifest.csv", split="test")
    fold = pd.read_csv(layout.results / "folds.csv", dtype={"Id": str}).set_index("Id").loc[train["Id"], "fold"]
    y = labels_to_matrix(train["Target"], HPA.n_classes)
    for paths in member_paths(layout).values():
        for k, (oof_path, test_path) in enumerate(zip(paths["oof"], paths["test"])):
            rows = np.flatnonzero(fold.to_numpy() == k)
            write_csv(probability_table(train["Id"].iloc[rows], informative_probs(y[rows], rng)), oof_path)
            write_csv(probability_table(test["Id"], rng.random((len(test), y.shape[1]))), test_path)


def unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_fold_embeddings(layout: Layout, seed: int = 0) -> None:
    """One random-unit-vector embedding per fold of every training (Kaggle + external) and test image."""
    rng = np.random.default_rng(seed)
    manifest = read_manifest(layout.results / "manifest.csv")
    train_ids = manifest.loc[manifest["split"] == "train", "Id"].to_numpy()
    test_ids = manifest.loc[manifest["split"] == "test", "Id"].to_numpy()
    for path in embedding_paths(layout):
        write_embeddings(path, train_ids, unit_vectors(len(train_ids), rng), test_ids, unit_vectors(len(test_ids), rng))

"""Duplicates and leaks within a dataset's own images (hpa.external.within), kept in one fold, named in the summary."""

import numpy as np
import pandas as pd

from hpa.data.folds import make_folds, read_groups
from hpa.external.within import cache_codes, pair_tables
from hpa.postprocess.summary import duplicate_lines


def screen_cache(n=12, seed=0):
    """Distinct textured fields (3 channels, 64 px) as the cache holds them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)


def test_a_test_image_copying_a_training_image_is_a_leak_and_training_copies_a_cluster(tmp_path):
    cache = screen_cache()
    cache[9] = cache[2]                      # test 9 copies train 2 (the lab case)
    cache[4] = np.clip(cache[1].astype(int) + 1, 0, 255).astype(np.uint8)  # train 4 ~ train 1
    ids = np.array([f"i{k}" for k in range(12)], dtype=object)
    splits = np.array(["train"] * 8 + ["test"] * 4)
    codes = cache_codes(cache, np.arange(12))
    assert (cache_codes(cache, np.arange(12)[::-1], batch=5, workers=2) == codes[::-1]).all()
    leaks, duplicates = pair_tables(ids, splits, codes, max_distance=6)
    assert leaks[["test_id", "train_id"]].values.tolist() == [["i9", "i2"]]
    assert duplicates["Id"].tolist() == ["i1", "i4"] and duplicates["cluster_size"].tolist() == [2, 2]
    leaks.to_csv(tmp_path / "leaks.csv", index=False)
    duplicates.to_csv(tmp_path / "duplicates.csv", index=False)
    (tmp_path / "results/data").mkdir(parents=True)
    for name in ("leaks.csv", "duplicates.csv"):
        (tmp_path / "results/data" / name).write_text((tmp_path / name).read_text())
    lines = duplicate_lines(tmp_path)
    assert lines[0] == "Test leaks within the source: 1 test images duplicate a training image (i9 ~ i2; " \
                       "results/data/leaks.csv)"
    assert lines[1].startswith("Duplicate training clusters: 1 (kept in one fold")


def test_duplicate_clusters_of_several_tables_merge_and_share_a_fold(tmp_path):
    pd.DataFrame({"Id": ["a", "b"], "cluster": [0, 0]}).to_csv(tmp_path / "source.csv", index=False)
    pd.DataFrame({"Id": ["b", "c", "x"], "cluster": [5, 5, 5]}).to_csv(tmp_path / "external.csv", index=False)
    groups = read_groups(tmp_path / "source.csv", tmp_path / "external.csv")
    assert groups["a"] == groups["b"] == groups["c"] == groups["x"]
    train = pd.DataFrame({"Id": list("abcdefghij"), "Target": ["0", "1"] * 5})
    folds = make_folds(train, 3, seed=0, groups=groups, n_classes=2).set_index("Id")["fold"]
    assert folds["a"] == folds["b"] == folds["c"]

"""Duplicates and leaks within a dataset's own images (hpa.external.within), kept in one fold, named in the summary."""

import numpy as np
import pandas as pd

from hpa.data.folds import make_folds, read_groups
from hpa.external.dedup import plane_summary, to_codes
from hpa.external.within import cache_codes, pair_tables, source_codes
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


class Untouchable:
    """A cache that fails the test on any read: with hash_images's hashes given, none is needed."""

    def __getattr__(self, name):
        raise AssertionError(f"the cache was read ({name}) although the source hashes were given")

    def __getitem__(self, key):
        raise AssertionError("the cache was read although the source hashes were given")


def test_the_source_hashes_of_hash_images_are_reused_and_give_the_leak_of_a_copied_test_image():
    images = np.random.default_rng(1).integers(0, 256, (10, 4, 64, 64), dtype=np.uint8)
    images[8] = images[3]                                         # test t8 copies train t3
    splits = ["train"] * 6 + ["test"] * 4
    rows = [{"Id": f"t{k}", "split": s, "Target": "0", "image_dir": "x", "error": "", **plane_summary(im, "phash")}
            for k, (s, im) in enumerate(zip(splits, images))]
    rows[5] = {**rows[5], "error": "OSError: truncated", "phash_red": ""}  # unreadable: no hash, not searched
    hashes = pd.DataFrame(rows).fillna("")
    # The cache kept t0..t5, x0 and t6..t8; t9 failed to decode (ok False), so its hash is not searched.
    # x0 is an external image ingest merged into train: not the source's, clean_external searched it.
    indexes = {"train": pd.DataFrame({"Id": [f"t{k}" for k in range(6)] + ["x0"], "row": range(7), "ok": True}),
               "test": pd.DataFrame({"Id": ["t6", "t7", "t8", "t9"], "row": range(4), "ok": [True, True, True, False]})}
    untouchable = {"train": Untouchable(), "test": Untouchable()}
    ids, split_of, codes = source_codes(indexes, untouchable, hashes, "phash", ["red", "green", "blue"])
    assert ids.tolist() == ["t0", "t1", "t2", "t3", "t4", "t6", "t7", "t8"]
    assert split_of.tolist() == ["train"] * 5 + ["test"] * 3 and codes.shape == (8, 3)
    assert (codes == to_codes(hashes.set_index("Id").loc[ids].reset_index(), "phash", ["red", "green", "blue"])).all()
    leaks, duplicates = pair_tables(ids, split_of, codes, max_distance=6)
    assert leaks[["test_id", "train_id", "distance"]].values.tolist() == [["t8", "t3", 0]]
    assert duplicates.empty


def test_without_source_hashes_the_cache_is_hashed():
    cache = screen_cache(6)
    cache[5] = cache[0]
    indexes = {"train": pd.DataFrame({"Id": ["a", "b", "c"], "row": [0, 1, 2], "ok": True}),
               "test": pd.DataFrame({"Id": ["d", "e", "f"], "row": [3, 4, 5], "ok": True})}
    ids, split_of, codes = source_codes(indexes, {"train": cache, "test": cache})
    assert (codes == cache_codes(cache, np.arange(6))).all() and split_of.tolist() == ["train"] * 3 + ["test"] * 3
    assert pair_tables(ids, split_of, codes, 6)[0][["test_id", "train_id"]].values.tolist() == [["f", "a"]]

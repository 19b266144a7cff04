import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_HPA
from PIL import Image

from hpa.classes import CHANNELS, HPA
from hpa.data.cache import build_cache, channel_stats
from hpa.data.folds import make_folds
from hpa.data.images import channel_files, load_image
from hpa.data.ingest import ingest
from hpa.tables import InputError, labels_to_matrix, matrix_to_labels, parse_target, read_labels


def test_parse_target_sorts_and_validates():
    assert parse_target("16 0", where="x") == [0, 16]
    for bad, message in (("", "empty"), ("3 a", "integers"), ("28", "outside"), ("2 2", "repeats")):
        with pytest.raises(InputError, match=message):
            parse_target(bad, where="train.csv, line 7")


def test_read_labels_names_file_and_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("Id,Target\na,1\nb,0 29\n")
    with pytest.raises(InputError, match=r"train.csv, line 3 \(Id b\): Target .0 29.: .29. is neither a class name "
                                         r"nor an index 0..27"):
        read_labels(path, HPA)
    path.write_text("Id,Target\na,1\na,2\n")
    with pytest.raises(InputError, match="line 3: Id a appears more than once"):
        read_labels(path, HPA)
    path.write_text("Image,Label\na,1\n")
    with pytest.raises(InputError, match="missing column"):
        read_labels(path, HPA)


def test_label_matrix_round_trip():
    targets = ["0 25", "27", "3 2 1"]
    y = labels_to_matrix(targets, 28)
    assert y.shape == (3, 28) and y.sum() == 6
    assert matrix_to_labels(y) == ["0 25", "27", "1 2 3"]


def test_ingest_writes_manifest(kaggle_source):
    manifest, rejected = ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    assert len(rejected) == 0
    assert (manifest["split"] == "train").sum() == 12 and (manifest["split"] == "test").sum() == 5
    assert set(manifest.columns) >= {"Id", "Target", "source", "split"}
    assert (manifest["width"] == 16).all()


def test_ingest_skips_a_broken_image_and_records_why(kaggle_source):
    (kaggle_source / "train" / "tr03_yellow.png").unlink()
    (kaggle_source / "train" / "tr04_green.png").write_bytes(b"not a png")
    manifest, rejected = ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    assert "tr03" not in set(manifest["Id"]) and "tr04" not in set(manifest["Id"])
    reasons = dict(zip(rejected["Id"], rejected["reason"]))
    assert "missing channel yellow" in reasons["tr03"]
    assert "unreadable channel green" in reasons["tr04"]


def test_ingest_stops_when_most_images_are_missing(kaggle_source):
    for path in (kaggle_source / "test").glob("*_blue.png"):
        path.unlink()
    with pytest.raises(InputError, match="5 of 5 test images are unusable"):
        ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0.01)


def test_ingest_refuses_test_ids_in_train(kaggle_source):
    (kaggle_source / "sample_submission.csv").write_text("Id,Predicted\ntr01,0\n")
    with pytest.raises(InputError, match="both train.csv and sample_submission.csv"):
        ingest(kaggle_source, "kaggle", vocab=HPA)


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_matches_direct_decode_and_survives_a_corrupt_file(kaggle_source, tmp_path, workers):
    manifest, _ = ingest(kaggle_source, "kaggle", vocab=HPA)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    # Corrupted after ingest (headers fine then): decode fails only in the cache stage.
    bad = kaggle_source / "train" / "tr05_red.png"
    bad.write_bytes(bad.read_bytes()[:60])
    index = build_cache(train, tmp_path / "c.npy", tmp_path / "c.csv", size=8, channels=CHANNELS, workers=workers)
    cache = np.load(tmp_path / "c.npy", mmap_mode="r")
    assert cache.shape == (12, 4, 8, 8) and cache.dtype == np.uint8
    assert not index.set_index("Id").at["tr05", "ok"]
    assert index["ok"].sum() == 11
    row = int(index.set_index("Id").at["tr07", "row"])
    assert np.array_equal(cache[row], load_image(channel_files(kaggle_source / "train", "tr07", CHANNELS), 8))
    assert not list(tmp_path.glob(".c.npy*")), "no temporary file left behind"


def test_channel_stats_match_numpy(rng):
    cache = rng.integers(0, 256, size=(10, 4, 6, 6), dtype=np.uint8)
    stats = channel_stats(cache, np.arange(10), CHANNELS)
    x = cache / 255.0
    assert np.allclose(stats["mean"], x.mean(axis=(0, 2, 3)), atol=1e-6)
    assert np.allclose(stats["std"], x.std(axis=(0, 2, 3)), atol=1e-6)


def test_folds_are_stratified_and_seeded():
    rng = np.random.default_rng(1)
    y = rng.random((600, 28)) < np.geomspace(0.005, 0.3, 28)
    y[np.arange(600), rng.integers(0, 28, 600)] = True
    train = pd.DataFrame({"Id": [f"i{i}" for i in range(600)], "Target": matrix_to_labels(y)})
    folds = make_folds(train, 3, seed=7, n_classes=28)
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert folds.equals(make_folds(train, 3, seed=7, n_classes=28))

    def spread(fold):
        per_fold = np.stack([y[fold == k].sum(0) for k in range(3)])
        return per_fold.max(0) - per_fold.min(0)

    stratified = spread(folds["fold"].to_numpy())
    shuffled = spread(rng.permutation(np.arange(600) % 3))
    rare = y.sum(0) <= 40
    assert (stratified[rare] <= 1).all(), "rare classes split as evenly as their counts allow"
    assert stratified.sum() < shuffled.sum() / 2


@pytest.mark.skipif(not (SHARED_HPA / "train.csv").exists(), reason="real competition labels not present")
def test_real_competition_labels_read_cleanly():
    labels = read_labels(SHARED_HPA / "train.csv", HPA)
    y = labels_to_matrix(labels["Target"], 28)
    assert len(labels) == 31072
    assert y[:, 0].sum() == 12885 and y[:, 27].sum() == 11


def test_too_many_broken_images_stop_with_counts_by_kind_a_fitting_hint_and_the_list_written(kaggle_source, tmp_path):
    for image_id in ("te00", "te01"):
        (kaggle_source / "test" / f"{image_id}_blue.png").unlink()
    for image_id in ("te02", "te03", "te04"):  # a channel of another size, not a wrong folder
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(kaggle_source / "test" / f"{image_id}_green.png")
    listed = tmp_path / "rejected.csv"
    with pytest.raises(InputError) as stop:
        ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0.01, rejected_csv=listed)
    message = str(stop.value)
    assert "5 of 5 test images are unusable" in message and f"all are listed in {listed}" in message
    assert "3 with channels of different sizes, e.g. te02 (channel green is (32, 32)" in message
    assert "te03, te04" in message and "the channels of an image must have the same size" in message
    assert "2 missing a channel, e.g. te00 (missing channel blue" in message and "check that the images are in" in message
    assert message.index("3 with channels") < message.index("2 missing")  # the most frequent kind first
    rejected = pd.read_csv(listed)
    assert dict(zip(rejected["Id"], rejected["kind"])) == {"te00": "missing", "te01": "missing", "te02": "size",
                                                            "te03": "size", "te04": "size"}

"""Perceptual hashes, the near-duplicate search, duplicate clusters, cleaning decisions and grouped folds."""

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_HPA
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from hpa.classes import CHANNELS, HPA
from hpa.data.folds import make_folds
from hpa.data.ingest import FULL_SIZE_DIRS, ingest
from hpa.demo.mirror import jitter, tinted_jpeg
from hpa.demo.render import render_field
from hpa.external.clean import CleanSettings, check_hashed, clean
from hpa.external.dedup import choose_search, clusters, find_pairs, hash_plane, hash_source, naive_pairs, to_codes
from hpa.external.download import to_plane
from hpa.tables import InputError, labels_to_matrix, read_labels


def planted_codes(n, channels, max_flips, n_pairs, seed=0):
    """Uniform random 64-bit hashes plus copies with up to ``max_flips`` bits flipped per channel."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64, size=(n, channels), dtype=np.uint64)
    for src, dst in rng.integers(0, n, size=(n_pairs, 2)):
        for c in range(channels):
            bits = rng.choice(64, rng.integers(0, max_flips + 1), replace=False)
            codes[dst, c] = codes[src, c] ^ np.uint64(sum(1 << int(b) for b in bits))
    return codes


@pytest.mark.parametrize("d", [0, 3, 12])
@pytest.mark.parametrize("method", ["scan", "pigeonhole", "auto"])
def test_search_finds_exactly_the_pairs_of_the_naive_search(d, method):
    codes = planted_codes(1200, 3, max_flips=d + 2, n_pairs=300, seed=d)  # some within d, some beyond
    codes[7] = codes[3]  # an exact copy, and a three-way cluster
    codes[9] = codes[3]
    i, j = find_pairs(codes, d, method=method, workers=2)
    expected = naive_pairs(codes, d)
    assert list(zip(i.tolist(), j.tolist())) == expected
    assert {(3, 7), (3, 9), (7, 9)} <= set(expected) and len(expected) > 3


def test_search_requires_every_channel_within_the_distance():
    codes = np.array([[0, 0], [0b111, 0], [0, 0b1111]], dtype=np.uint64)  # distances (3, 0) and (0, 4)
    assert find_pairs(codes, 3)[0].tolist() == [0]
    assert set(zip(*map(list, find_pairs(codes, 4)))) == {(0, 1), (0, 2), (1, 2)}
    assert find_pairs(codes[:, :1], 0, method="scan")[0].tolist() == [0]  # one channel: 0 and 2 equal


def test_the_cheaper_search_is_chosen():
    codes = planted_codes(5000, 3, 2, 50)
    assert choose_search(codes, 0) == "pigeonhole" and choose_search(codes, 3) == "pigeonhole"
    assert choose_search(codes, 12) == "scan"  # 13 chunks of 5 bits: more candidates than pairs
    blank = np.zeros((5000, 3), dtype=np.uint64)  # all equal: every pair is a candidate either way
    assert choose_search(blank, 0) == "scan"


def test_clusters_are_connected_components():
    labels = clusters(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels[0] == labels[1] == labels[2] and labels[4] == labels[5]
    assert len({labels[0], labels[3], labels[4]}) == 3


def reencoded(planes, size, seed):
    """What the atlas does to a duplicate: rescaled, brightness-jittered, JPEG-compressed."""
    jittered = jitter(planes, size, np.random.default_rng(seed))
    return np.stack([to_plane(tinted_jpeg(p, c, 85), c, 64) for p, c in zip(jittered, CHANNELS)])


def test_phash_matches_a_reencoded_copy_and_separates_other_fields():
    rng = np.random.default_rng(5)
    fields = [render_field(frozenset({k}), 64, rng) for k in (0, 0, 23, 25, 2, 21)]
    codes = to_codes(pd.DataFrame([{f"phash_{c}": hash_plane(p, "phash") for c, p in zip(CHANNELS, f)}
                                   for f in fields + [reencoded(fields[0], 160, 1), reencoded(fields[2], 96, 2)]]),
                     "phash", ["red", "green", "blue"])
    i, j = find_pairs(codes, 12)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 6), (2, 7)]  # two fields with the same label differ


def hashes(value, channels=("red", "green", "blue", "yellow")):
    """Hash columns where every channel's hash is ``value`` (16 hex digits)."""
    return {f"phash_{c}": f"{value:016x}" for c in channels}


def record(image_id, value, status="ok", std=30.0, **kw):
    return {"Id": image_id, "status": status, "error": "" if status == "ok" else "red: HTTP 404",
            **(hashes(value) if status == "ok" else {}), **{f"std_{c}": std if status == "ok" else None for c in CHANNELS},
            **kw}


FAR = [0x0F0F0F0F0F0F0F0F, 0xF0F0F0F0F0F0F0F0, 0x00FF00FF00FF00FF, 0xFF00FF00FF00FF00,
       0x0000FFFF0000FFFF, 0xFFFF0000FFFF0000, 0x00000000FFFFFFFF, 0xFFFFFFFF00000000, 0x3333333333333333]


@pytest.fixture
def scenario():
    """Train t1, t2, test s1; external copies of them, an external pair, a chain, faulty ones."""
    source = pd.DataFrame([
        {"Id": "t1", "split": "train", "Target": "0", "error": "", **hashes(FAR[0])},
        {"Id": "t2", "split": "train", "Target": "7", "error": "", **hashes(FAR[1])},
        {"Id": "s1", "split": "test", "Target": "", "error": "", **hashes(FAR[2])},
        {"Id": "broken", "split": "train", "Target": "3", "error": "OSError: truncated"},
    ])
    download = pd.DataFrame([
        record("e_t1", FAR[0] ^ 0b101, blank=False),          # copy of train t1, 2 bits off
        record("e_s1", FAR[2] ^ 0xFF),                         # copy of test s1, 8 bits off: a leak
        record("e_a", FAR[3]), record("e_b", FAR[3] ^ 1),     # an external pair
        record("e_c", FAR[1] ^ (0xFFF << 20)),                  # 12 bits from t2
        record("e_d", FAR[1] ^ (0xFFF << 20) ^ (0xFFF << 40)),  # 12 from e_c, 24 from t2: the chain reaches train
        record("e_gone", 0, status="missing"),
        record("e_flat", FAR[4], std=0.2),
        record("e_ok", FAR[5]),
    ]).drop(columns="blank")
    labels = pd.DataFrame({"Id": download["Id"], "Target": ["0 5", "1", "1", "2", "7", "7", "3", "4", "9"]})
    return download, labels, source


def test_cleaning_decides_per_cluster(scenario):
    result = clean(*scenario, CleanSettings(), max_rejected_fraction=0.5)
    table = result.table.set_index("Id")
    assert table["reason"].to_dict() == {
        "e_t1": "duplicate_of_train", "e_s1": "duplicate_of_test", "e_a": "", "e_b": "duplicate_within_external",
        "e_c": "duplicate_of_train", "e_d": "duplicate_of_train", "e_gone": "missing", "e_flat": "blank", "e_ok": ""}
    assert table.loc["e_a", "Target"] == "1 2"  # union over its external cluster
    assert table.loc["e_flat", "detail"] == "red std 0.20 < 1.0"
    assert table.loc["e_a", "cluster"] == table.loc["e_b", "cluster"] and pd.isna(table.loc["e_ok", "cluster"])

    report = result.report
    assert report["kept"] == 2 and report["dropped"]["duplicate_of_train"] == 3
    assert report["duplicates"]["pairs"] == {"external-external": 2, "external-test": 1, "external-train": 2}
    assert report["duplicates"]["largest_cluster"] == 3 and report["duplicates"]["clusters"] == 4
    conflicts = {frozenset(c["Id"]) for c in report["label_conflicts"]["examples"]}
    assert conflicts == {frozenset({"t1", "e_t1"}), frozenset({"e_a", "e_b"})}  # t2, e_c, e_d agree on 7
    assert report["leaks"] == {"test_images": 1, "via_train": 0, "via_external": 1}
    assert result.leaks.drop(columns="cluster").to_dict("records") == [
        {"test_id": "s1", "match_id": "e_s1", "match_split": "external", "match_target": "1"}]

    dup = result.duplicates
    assert set(dup["Id"]) == {"t1", "e_t1", "s1", "e_s1", "e_a", "e_b", "t2", "e_c", "e_d"}
    assert dup.groupby("cluster")["Id"].apply(frozenset).map(len).sort_values().tolist() == [2, 2, 2, 3]


def test_test_duplicates_are_trained_on_only_when_asked(scenario):
    result = clean(*scenario, CleanSettings(train_on_test_duplicates=True), max_rejected_fraction=0.5)
    assert result.table.set_index("Id").loc["e_s1", "status"] == "kept"
    assert result.report["leaks"]["test_images"] == 1  # still reported


def test_exact_green_hash_mode_ignores_the_other_channels(scenario):
    download, labels, source = scenario
    download.loc[download["Id"].eq("e_ok"), "phash_green"] = f"{FAR[0]:016x}"  # t1's green, its own red and blue
    table = clean(download, labels, source, CleanSettings(channels=("green",), max_distance=0),
                  max_rejected_fraction=0.5).table.set_index("Id")
    assert table.loc["e_ok", "reason"] == "duplicate_of_train"
    assert table.loc["e_t1", "reason"] == ""  # 2 bits off in green: not equal


def test_cleaning_stops_when_more_source_images_than_allowed_have_no_hash(scenario):
    """1 of 3 train images ("broken") has no hash: allowed at 0.5, refused at 0.2, naming it."""
    with pytest.raises(InputError, match=r"1 of 3 train images .* could not be hashed .*"
                                         r"max_rejected_fraction=0.2.* broken: OSError: truncated"):
        clean(*scenario, CleanSettings(), max_rejected_fraction=0.2)


def test_source_images_are_hashed_from_the_folders_ingest_reads(kaggle_source):
    """Under kaggle.full_size the images sit in train_full_size/ and test_full_size/ only."""
    for split, folder in FULL_SIZE_DIRS.items():
        (kaggle_source / split).rename(kaggle_source / folder)
    hashes = hash_source(kaggle_source, "phash", image_dirs=FULL_SIZE_DIRS)
    assert len(hashes) == 17 and hashes["error"].eq("").all()
    manifest, _ = ingest(kaggle_source, "kaggle", vocab=HPA, max_rejected_fraction=0, image_dirs=FULL_SIZE_DIRS)
    assert hashes.set_index("Id")["image_dir"].to_dict() == manifest.set_index("Id")["image_dir"].to_dict()
    # The old lookup (train/ and test/ whatever the config) hashes nothing, and cleaning now says so.
    wrong = hash_source(kaggle_source, "phash")
    assert wrong["error"].str.startswith("FileNotFoundError").all()
    with pytest.raises(InputError, match=r"12 of 12 train images .* first errors: tr00: FileNotFoundError"):
        check_hashed(wrong, 0.01)


def random_labels(n, rng):
    return [" ".join(map(str, sorted(rng.choice(28, rng.integers(1, 4), replace=False)))) for _ in range(n)]


def test_folds_without_groups_are_the_plain_stratified_folds():
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"Id": [f"i{k}" for k in range(200)], "Target": random_labels(200, rng)})
    folds = make_folds(train, 4, seed=3, n_classes=28)
    splitter = MultilabelStratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    expected = np.zeros(200, int)
    for k, (_, val) in enumerate(splitter.split(np.zeros(200), labels_to_matrix(train["Target"], 28))):
        expected[val] = k
    assert folds["fold"].tolist() == expected.tolist()
    assert make_folds(train, 4, seed=3, groups={}, n_classes=28).equals(folds)


def test_folds_keep_each_duplicate_cluster_in_one_fold():
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"Id": [f"i{k}" for k in range(300)], "Target": random_labels(300, rng)})
    members = rng.permutation(300)[:120].reshape(40, 3)
    groups = {f"i{m}": g for g, row in enumerate(members) for m in row}
    folds = make_folds(train, 3, seed=0, groups=groups, n_classes=28).set_index("Id")["fold"]
    assert all(folds[[f"i{m}" for m in row]].nunique() == 1 for row in members)
    assert folds.value_counts().between(85, 115).all()
    # Without the groups, the same clusters straddle folds.
    plain = make_folds(train, 3, seed=0, n_classes=28).set_index("Id")["fold"]
    assert any(plain[[f"i{m}" for m in row]].nunique() > 1 for row in members)


@pytest.mark.skipif(not (SHARED_HPA / "leaks/dupes.csv").exists(), reason="published duplicate groups not present")
def test_published_duplicate_groups_of_kaggle_train_stay_in_one_fold():
    """pedrodiamel's 106 duplicate groups within Kaggle's train.csv, with their real labels."""
    dupes = pd.read_csv(SHARED_HPA / "leaks/dupes.csv")
    labels = read_labels(SHARED_HPA / "train.csv", HPA)
    others = labels[~labels["Id"].isin(dupes["ID"])].sample(800, random_state=0)
    train = pd.concat([labels[labels["Id"].isin(dupes["ID"])], others], ignore_index=True)
    folds = make_folds(train, 5, seed=42, groups=dict(zip(dupes["ID"], dupes["Group Id"])), n_classes=28)
    per_group = folds.merge(dupes, left_on="Id", right_on="ID").groupby("Group Id")["fold"].nunique()
    assert len(per_group) == 106 and (per_group == 1).all()

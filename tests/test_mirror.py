"""The demo's HPAv18 mirror, downloaded and cleaned: the cleaning recovers exactly what was planted."""

import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpa.classes import CHANNELS
from hpa.demo.dataset import make_demo
from hpa.demo.mirror import make_mirror, mirror_path
from hpa.external.clean import CleanSettings, clean
from hpa.external.dedup import hash_source
from hpa.external.download import Settings, download, read_list

EXPECTED = {"new": "", "copy_train": "duplicate_of_train", "copy_test": "duplicate_of_test",
            "missing_channel": "missing", "blank_channel": "blank", "corrupt_channel": "unreadable"}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    make_demo(root / "demo", n_train=40, n_test=20, size=48, seed=11, min_per_class=0, workers=2)
    make_mirror(root / "demo", root / "mirror", n=60, size=96, seed=11, workers=2)
    return root


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_mirror_looks_like_the_atlas_and_is_deterministic(mirrored, tmp_path):
    listed = read_list(mirrored / "mirror/list.csv")
    truth = pd.read_csv(mirrored / "mirror/truth.csv", keep_default_na=False)
    assert len(listed) == 60 and listed["Id"].tolist() == truth["Id"].tolist()
    counts = truth["kind"].value_counts()
    assert all(counts[k] >= 1 for k in EXPECTED) and counts["copy_external"] >= 1
    some = truth.loc[truth["kind"].eq("new"), "Id"].iloc[0]
    for color, tint in zip(CHANNELS, [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]):
        with Image.open(mirror_path(mirrored / "mirror/images", some, color)) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (96, 96)
            means = np.asarray(im, dtype=float).reshape(-1, 3).mean(axis=0)
        tinted, dark = means[np.array(tint, bool)], means[~np.array(tint, bool)]
        assert tinted.min() > 2.5 * dark.max(), (color, means)  # JPEG chroma leaks a little, as the atlas's
    make_mirror(mirrored / "demo", tmp_path / "again", n=60, size=96, seed=11)
    assert digest(tmp_path / "again") == digest(mirrored / "mirror")


def test_download_and_cleaning_recover_exactly_what_was_planted(mirrored):
    root = mirrored
    listed = read_list(root / "mirror/list.csv")
    settings = Settings(base_url=f"file:{root / 'mirror/images'}", size=48, workers=2, retries=1, backoff=0.01, rate=0)
    records = download(listed["Id"], root / "external/images", root / "external/journal.jsonl", settings)
    result = clean(records, listed, hash_source(root / "demo", "phash", workers=2), CleanSettings(),
                   max_rejected_fraction=0)
    got = pd.read_csv(root / "mirror/truth.csv", keep_default_na=False).merge(result.table, on="Id")

    copies = got[got["kind"].eq("copy_external")]
    plain = got[~got["Id"].isin(copies["of"]) & ~got["kind"].eq("copy_external")]
    for kind, reason in EXPECTED.items():
        assert plain.loc[plain["kind"].eq(kind), "reason"].eq(reason).all(), (kind, plain[plain["kind"].eq(kind)])
    # Of an external copy and its original, exactly one is kept.
    for copy in copies.itertuples():
        pair = got[got["Id"].isin([copy.Id, copy.of])]
        assert sorted(pair["reason"]) == ["", "duplicate_within_external"]
    assert result.report["kept"] == (got["kind"].eq("new")).sum()
    assert result.report["leaks"]["test_images"] == got["kind"].eq("copy_test").sum()
    test_of = dict(zip(got["of"], got["Id"]))
    assert all(test_of[t] == m for t, m in zip(result.leaks["test_id"], result.leaks["match_id"]))
    # The train copy planted with an extra label is the one conflict with train.
    conflicts = [c for c in result.report["label_conflicts"]["examples"] if "train" in c["split"]]
    assert len(conflicts) == 1


def test_a_rewritten_mirror_is_downloaded_again_and_an_unchanged_one_is_not(mirrored, tmp_path):
    """A file: mirror written again (the demo's, after its config changes) must not leave stale images."""
    root = mirrored
    listed = read_list(root / "mirror/list.csv")
    settings = Settings(base_url=f"file:{root / 'mirror/images'}", size=48, workers=2, retries=1, backoff=0.01, rate=0)
    images, journal = tmp_path / "images", tmp_path / "journal.jsonl"
    first = download(listed["Id"], images, journal, settings)
    ok = first.loc[first["status"].eq("ok"), "Id"].tolist()
    lines = len(journal.read_text().splitlines())
    download(listed["Id"], images, journal, settings)
    assert len(journal.read_text().splitlines()) == lines  # nothing fetched again
    changed = ok[0]
    with Image.open(mirror_path(root / "mirror/images", changed, "green")) as im:
        flipped = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    flipped.save(mirror_path(root / "mirror/images", changed, "green"), format="JPEG", quality=95)
    before = np.asarray(Image.open(images / f"{changed}_green.png"))
    download(listed["Id"], images, journal, settings)
    refetched = [line for line in journal.read_text().splitlines()[lines:]]
    assert len(refetched) == 1 and changed in refetched[0]
    assert not np.array_equal(np.asarray(Image.open(images / f"{changed}_green.png")), before)

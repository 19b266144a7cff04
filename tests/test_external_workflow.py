"""The external stages inside the real workflow (TINY demo run): mirror → download → clean → manifest → folds."""

import copy
import json
import shutil

import pandas as pd
import pytest
import yaml
from conftest import TINY, job_counts, snakemake

pytestmark = pytest.mark.workflow

EXTERNAL_RULES = ("make_demo_mirror", "download_external", "hash_images", "clean_external")


def test_kept_external_images_are_in_the_manifest_as_training_images(demo_run):
    manifest = pd.read_csv(demo_run / "results/data/manifest.csv", dtype=str, keep_default_na=False)
    kept = pd.read_csv(demo_run / "results/external/kept.csv", dtype=str, keep_default_na=False)
    external = manifest[manifest["source"].eq("external")]
    assert len(kept) > 10 and sorted(external["Id"]) == sorted(kept["Id"])
    assert external["split"].eq("train").all() and external["image_dir"].eq("resources/external/images").all()
    assert external["width"].eq("48").all()  # external.size, resized from the mirror's 96 px
    assert dict(zip(external["Id"], external["Target"])) == dict(zip(kept["Id"], kept["Target"]))


def test_cleaning_counts_match_what_the_mirror_planted(demo_run):
    truth = pd.read_csv(demo_run / "resources/demo/mirror/truth.csv", keep_default_na=False)
    report = json.loads((demo_run / "results/external/report.json").read_text())
    kinds = truth["kind"].value_counts()
    assert report["list"] == len(truth)
    assert report["dropped"] == {
        "missing": kinds["missing_channel"], "refused": 0, "unreadable": kinds["corrupt_channel"], "failed": 0,
        "blank": kinds["blank_channel"], "duplicate_of_test": kinds["copy_test"],
        "duplicate_of_train": kinds["copy_train"], "duplicate_within_external": kinds["copy_external"]}
    assert report["kept"] == kinds["new"]
    assert report["leaks"]["test_images"] == kinds["copy_test"]


def test_duplicate_clusters_never_straddle_folds(demo_run):
    folds = pd.read_csv(demo_run / "results/splits/folds.csv", dtype={"Id": str})
    duplicates = pd.read_csv(demo_run / "results/external/duplicates.csv", dtype={"Id": str})
    placed = duplicates.merge(folds, on="Id")
    assert placed.groupby("cluster")["fold"].nunique().eq(1).all()
    assert not set(duplicates.loc[duplicates["status"].str.startswith("duplicate", na=False), "Id"]) & set(folds["Id"])


def test_every_image_was_fetched_once_and_every_stage_logged(demo_run):
    journal = (demo_run / "resources/external/download_journal.jsonl").read_text().splitlines()
    ids = [json.loads(line)["Id"] for line in journal]
    assert len(ids) == len(set(ids)) == TINY["demo"]["mirror"]["n"]
    for rule in EXTERNAL_RULES:
        assert (demo_run / f"logs/{rule}.log").exists() and (demo_run / f"benchmarks/{rule}.tsv").exists()


def plan(workdir, config):
    (workdir / "changed.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", configfile="changed.yaml")
    return job_counts(result.stdout + result.stderr)


def test_tuning_the_download_reruns_nothing_and_the_threshold_reruns_from_cleaning(demo_run):
    tuned = copy.deepcopy(TINY)
    tuned["external"].update(workers=8, rate=5, timeout=60, retries=4)
    assert plan(demo_run, tuned) == {}
    stricter = copy.deepcopy(TINY)
    stricter["external"]["dedup"] = {"max_distance": 6}
    counts = plan(demo_run, stricter)
    assert counts["clean_external"] == 1 and counts["ingest"] == 1
    assert not {"make_demo", "make_demo_mirror", "download_external", "hash_images"} & set(counts)


@pytest.fixture(scope="module")
def full_size_run(demo_run, tmp_path_factory):
    """The demo's images as Kaggle's full-size layout (train_full_size/, test_full_size/ only), with the
    demo's mirror as the external source: cleaned up to the leak table, nothing trained."""
    return full_size_layout(demo_run, tmp_path_factory.mktemp("full_size"))


def full_size_layout(demo_run, workdir):
    """Lay out and clean the full-size copy of the demo in ``workdir`` (full_size_run)."""
    demo, kaggle = demo_run / "resources/demo", workdir / "resources/kaggle"
    kaggle.mkdir(parents=True)
    for name in ("train.csv", "sample_submission.csv"):
        shutil.copy(demo / name, kaggle / name)
    for split in ("train", "test"):
        shutil.copytree(demo / split, kaggle / f"{split}_full_size")
    shutil.copytree(demo / "mirror", workdir / "resources/mirror")
    config = {k: v for k, v in copy.deepcopy(TINY).items() if k != "demo"}
    config.update(source="kaggle", kaggle={"dir": "resources/kaggle", "full_size": True})
    config["external"].update(list="resources/mirror/list.csv", base_url="file:resources/mirror/images")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "results/external/report.json")
    return workdir


def test_full_size_layout_finds_the_planted_train_duplicates_and_test_leaks(full_size_run, demo_run):
    truth = pd.read_csv(full_size_run / "resources/mirror/truth.csv", dtype=str, keep_default_na=False)
    table = pd.read_csv(full_size_run / "results/external/cleaning.csv", dtype=str, keep_default_na=False)
    leaks = pd.read_csv(full_size_run / "results/external/leaks.csv", dtype=str, keep_default_na=False)
    reason = table.set_index("Id")["reason"]
    copies = {kind: truth[truth["kind"].eq(kind)] for kind in ("copy_train", "copy_test")}
    assert len(copies["copy_train"]) and len(copies["copy_test"])  # the mirror planted both kinds
    assert reason[copies["copy_train"]["Id"]].eq("duplicate_of_train").all()
    assert reason[copies["copy_test"]["Id"]].eq("duplicate_of_test").all()
    assert set(zip(leaks["test_id"], leaks["match_id"])) >= set(zip(copies["copy_test"]["of"], copies["copy_test"]["Id"]))
    hashes = pd.read_csv(full_size_run / "results/external/source_hashes.csv", dtype=str, keep_default_na=False)
    assert hashes["error"].eq("").all() and hashes["image_dir"].str.endswith("_full_size").all()
    # The same images in the demo's own layout gave the same report.
    same = json.loads((demo_run / "results/external/report.json").read_text())
    report = json.loads((full_size_run / "results/external/report.json").read_text())
    assert report["dropped"] == same["dropped"] and report["leaks"] == same["leaks"]


def test_unreadable_source_images_above_the_allowed_fraction_stop_cleaning(full_size_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(full_size_run, workdir)
    train = pd.read_csv(workdir / "resources/kaggle/train.csv", dtype=str)["Id"]
    broken = sorted(train)[:3]  # 3 of 36 train images: above data.max_rejected_fraction 0.05
    for image_id in broken:
        (workdir / f"resources/kaggle/train_full_size/{image_id}_green.png").write_bytes(b"not a png")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["data"]["max_rejected_fraction"] = 0.05
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "results/external/report.json", "--forcerun", "hash_images", check=False)
    assert result.returncode != 0
    log = (workdir / "logs/clean_external.log").read_text()
    assert f"3 of {len(train)} train images of the source could not be hashed" in log
    assert f"first errors: {broken[0]}: UnidentifiedImageError" in log
    assert all(image_id in log for image_id in broken)

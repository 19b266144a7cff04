"""The external stages inside the real workflow (TINY demo run): mirror → download → clean → manifest → folds."""

import copy
import json

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

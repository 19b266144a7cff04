"""Transfer turned on in the workflow (TINY demo run): embedding rules, transferred tables, duplicates."""

import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, job_counts, snakemake

from hpa.embedding.neighbours import read_embeddings
from hpa.postprocess.submission import submission
from hpa.tables import prob_columns

PROB_COLUMNS = prob_columns(28)

pytestmark = pytest.mark.workflow

TRANSFER = copy.deepcopy(TINY)
TRANSFER["embedding"] = {"arch": "resnet18", "dim": 32, "epochs": 1, "batch_size": 8}
TRANSFER["ensembles"] = {"main": dict(TINY["ensembles"]["main"], transfer=True, transfer_mode="replace")}
# The one-epoch embedding of the tiny run puts about half of its ~3000 pairs above 0.95.
MIN_SIMILARITY = 0.95
TRANSFER["embedding"]["duplicate_similarity"] = MIN_SIMILARITY
EMBEDDING_RULES = {"train_embedding": 2, "embed": 2, "embedding_neighbours": 1, "transfer_labels": 1,
                   "embedding_duplicates": 1}


@pytest.fixture(scope="module")
def transfer_run(demo_run, tmp_path_factory):
    """A copy of the shared TINY run (conftest), then transfer turned on for its ensemble."""
    workdir = tmp_path_factory.mktemp("transfer_run")
    shutil.copytree(demo_run, workdir, symlinks=True, dirs_exist_ok=True)  # keeps mtimes: nothing is stale
    (workdir / "config.yaml").write_text(yaml.safe_dump(TRANSFER))
    result = snakemake(workdir)
    return workdir, job_counts(result.stdout + result.stderr)


def test_turning_transfer_on_adds_the_embedding_and_reuses_the_classifier(transfer_run):
    _, counts = transfer_run
    assert EMBEDDING_RULES.items() <= counts.items()
    assert not {"train", "predict", "blend", "cache_images"} & set(counts)
    assert {"fit_thresholds", "make_submission", "evaluate_test"} <= set(counts)


def test_workflow_submission_is_built_from_the_transferred_table(transfer_run):
    tmp_path, _ = transfer_run
    results = tmp_path / "results"
    fold0 = read_embeddings(results / "embedding/fold0/embeddings.npz")
    cache_ids = pd.read_csv(results / "cache/train.csv", dtype={"Id": str}).query("ok")["Id"]
    assert list(fold0["train_ids"]) == list(cache_ids) and fold0["train"].shape[1] == 32
    assert np.allclose(np.linalg.norm(fold0["test"], axis=1), 1, atol=1e-5)

    blended = pd.read_csv(results / "ensembles/main/test.csv", dtype={"Id": str})
    moved = pd.read_csv(results / "ensembles/main/transfer/test.csv", dtype={"Id": str})
    assert list(moved.columns) == ["Id", *PROB_COLUMNS] and list(moved["Id"]) == list(blended["Id"])
    record = json.loads((results / "ensembles/main/transfer/transfer.json").read_text())
    changed = ~np.isclose(moved[PROB_COLUMNS], blended[PROB_COLUMNS]).all(axis=1)
    assert changed.sum() == record["test"]["transferred"]
    thresholds = json.loads((results / "thresholds/main.json").read_text())
    # fit_thresholds scored the transferred OOF table (as rounded in its CSV), not the blended one.
    assert thresholds["oof_macro_f1"] == pytest.approx(record["oof"]["macro_f1_after"], abs=1e-4)
    assert record["oof"]["macro_f1_after"] >= record["oof"]["macro_f1_before"]

    sub = pd.read_csv(results / "submission/main.csv", dtype=str, keep_default_na=False)
    assert sub.equals(submission(moved, thresholds, list(sub["Id"])))
    plan = snakemake(tmp_path, "-n", "--forcerun", "make_submission", "evaluate_test").stdout
    for rule in ("make_submission", "evaluate_test"):
        block = plan.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        assert "results/ensembles/main/transfer/test.csv" in block, block
    for rule in ("train_embedding/fold0", "embed/fold1", "embedding_neighbours", "transfer_labels/main"):
        assert (tmp_path / "benchmarks" / f"{rule}.tsv").exists()


def pairs_at_least(cosine, ids, value):
    """Unordered Id pairs whose cosine is at least ``value``."""
    i, j = np.nonzero(np.triu(cosine >= value, k=1))
    return {frozenset(p) for p in zip(ids[i], ids[j])}


def test_duplicates_are_every_pair_above_the_cosine_marked_where_phash_clustered_them(transfer_run):
    """Recomputed by brute force from the fold embeddings and clean_external's pHash clusters."""
    results = transfer_run[0] / "results"
    folds = [read_embeddings(results / f"embedding/fold{k}/embeddings.npz") for k in range(TINY["folds"]["n"])]
    ids = np.concatenate([folds[0]["train_ids"], folds[0]["test_ids"]])
    rows = [np.concatenate([f["train"], f["test"]]).astype(np.float64) for f in folds]
    cosine = np.mean([r @ r.T for r in rows], axis=0)  # the mean over folds of each pair's cosine
    # Pairs within float32 rounding of the threshold may fall either way.
    surely, maybe = (pairs_at_least(cosine, ids, MIN_SIMILARITY + d) for d in (1e-5, -1e-5))

    duplicates = pd.read_csv(results / "embedding/duplicates.csv", dtype={"Id_a": str, "Id_b": str})
    assert list(duplicates.columns)[:3] == ["Id_a", "Id_b", "similarity"]
    found = {frozenset(p) for p in zip(duplicates["Id_a"], duplicates["Id_b"])}
    assert len(surely) > 0 and surely <= found <= maybe and len(found) == len(duplicates)
    cluster = pd.read_csv(results / "external/duplicates.csv", dtype={"Id": str}).set_index("Id")["cluster"]
    clustered = [a in cluster.index and b in cluster.index and cluster[a] == cluster[b]
                 for a, b in zip(duplicates["Id_a"], duplicates["Id_b"])]
    assert duplicates["phash_cluster"].astype(bool).tolist() == clustered

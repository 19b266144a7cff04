"""Multi-process training: torchrun's launcher, 2 CPU processes on gloo, against one process."""

import numpy as np
import pandas as pd
import pytest
import torch

from hpa.classes import HPA
from hpa.config.spec import TrainConfig
from hpa.files import write_json
from hpa.runtime.distributed import RankBatches, Ranks, epoch_batches
from hpa.tables import matrix_to_labels, prob_columns
from hpa.training.job import run_job

PROB_COLUMNS = prob_columns(28)
from test_train import STATS, toy_problem


def test_ranks_split_each_global_batch_into_contiguous_equal_slices():
    batches = epoch_batches(50, 8, torch.Generator().manual_seed(0))
    assert len(batches) == 6 and all(len(b) == 8 for b in batches), "the remainder of 2 is dropped"
    parts = [list(RankBatches(batches, Ranks(rank, 2))) for rank in (0, 1)]
    for k, batch in enumerate(batches):
        assert parts[0][k] + parts[1][k] == batch.tolist()
    again = epoch_batches(50, 8, torch.Generator().manual_seed(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again)), "every rank draws the same epoch"


def test_batch_size_must_divide_over_the_processes(tmp_path):
    job = write_job(tmp_path)
    with pytest.raises(ValueError, match="multiple of processes"):
        run(job, tmp_path / "odd", processes=2, batch_size=9)


def write_job(root):
    """A train job's input files (cache, index, stats, folds, manifest, vocabulary) for the toy problem."""
    cache, y = toy_problem(size=32)
    ids = [f"img{i:02d}" for i in range(len(y))]
    np.save(root / "train.npy", cache)
    pd.DataFrame({"Id": ids, "row": range(len(ids)), "ok": True}).to_csv(root / "train.csv", index=False)
    write_json(STATS, root / "stats.json")
    HPA.write(root / "vocabulary.json")
    pd.DataFrame({"Id": ids, "fold": [0] * 16 + [1] * 32}).to_csv(root / "folds.csv", index=False)
    pd.DataFrame({"Id": ids, "Target": matrix_to_labels(y), "source": "demo", "split": "train",
                  "image_dir": "", "width": 32, "height": 32}).to_csv(root / "manifest.csv", index=False)
    return root


def run(job, out, **model):
    out.mkdir()
    cfg = {"epochs": 2, "batch_size": 8, "lr": 3e-3, "augment": {"dihedral": False}, **model}
    run_job(cache_npy=job / "train.npy", cache_index=job / "train.csv", stats_json=job / "stats.json",
            folds_csv=job / "folds.csv", manifest_csv=job / "manifest.csv", vocabulary_json=job / "vocabulary.json",
            model_name="toy", model_cfg=cfg,
            fold=0, checkpoint=out / "model.pt", history_csv=out / "history.csv", oof_csv=out / "oof.csv",
            threads=2)
    oof = pd.read_csv(out / "oof.csv").set_index("Id")[prob_columns(28)].to_numpy()
    return pd.read_csv(out / "history.csv"), oof, torch.load(out / "model.pt")


def test_two_gloo_processes_train_like_one(tmp_path):
    """VGG16 without its dense layers (GAPNet head) has no BatchNorm, whose per-process batch
    statistics would be the one thing that separates the runs: so they must agree closely."""
    job = write_job(tmp_path)
    model = {"arch": "vgg16", "head": "gapnet", "accumulate": 2, "batch_size": 4, "lr": 1e-4}
    one_history, one, _ = run(job, tmp_path / "one", processes=1, **model)
    two_history, two, ckpt = run(job, tmp_path / "two", processes=2, **model)
    _, other, _ = run(job, tmp_path / "other", processes=1, **{**model, "seed": 7})

    assert TrainConfig.from_dict(ckpt["config"]["model"]).processes == 2
    assert not (tmp_path / "two" / "last.pt").exists()
    assert list(two_history["epoch"]) == [1, 2]
    assert np.allclose(two_history["train_loss"], one_history["train_loss"], rtol=1e-4)
    assert np.abs(two - one).max() < 1e-4
    assert np.abs(other - one).max() > 100 * np.abs(two - one).max(), "another seed is another model"


def test_two_gloo_processes_train_the_embedding_like_one(tmp_path):
    """The embedding runs in the same loop, so it is data-parallel the same way. Its BatchNorm neck
    normalises each process's half batch on CPU (SyncBatchNorm is CUDA's), so the two runs agree
    only loosely: what must hold is one checkpoint, written once, from two ranks that trained."""
    from hpa.embedding.job import run_training_job
    from hpa.embedding.model import load_embedder

    job = write_job(tmp_path)
    common = {"arch": "vgg16", "dim": 8, "epochs": 2, "batch_size": 16, "lr": 1e-4, "min_class_size": 1}
    histories = {}
    for name, processes in (("one", 1), ("two", 2)):
        out = tmp_path / name
        run_training_job(cache_npy=job / "train.npy", cache_index=job / "train.csv", stats_json=job / "stats.json",
                         folds_csv=job / "folds.csv", manifest_csv=job / "manifest.csv",
                         vocabulary_json=job / "vocabulary.json", embedding={**common, "processes": processes}, fold=0,
                         checkpoint=out / "model.pt",
                         history_csv=out / "history.csv", threads=2)
        histories[name] = pd.read_csv(out / "history.csv")
        assert not (out / "last.pt").exists()
    model, ckpt = load_embedder(tmp_path / "two" / "model.pt", torch.device("cpu"))
    assert ckpt["config"]["embedding"]["processes"] == 2 and list(histories["two"]["epoch"]) == [1, 2]
    assert np.isfinite(histories["two"]["train_loss"]).all()
    assert np.allclose(histories["two"]["train_loss"], histories["one"]["train_loss"], rtol=0.25)

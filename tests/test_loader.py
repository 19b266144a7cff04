"""The training loader at scale: nothing large pickled into workers, one loader for all epochs, seeded order."""

import pickle

import numpy as np
import pytest
import torch

from hpa.runtime import distributed
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import CachedImages, make_loader, training_loader


def disk_cache(path, n, size=16):
    cache = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 4, size, size))
    cache[:] = np.random.default_rng(n).integers(0, 256, size=cache.shape, dtype=np.uint8)
    cache.flush()
    return np.load(path, mmap_mode="r")


def labels(n):
    return (np.random.default_rng(1).random((n, 28)) < 0.2).astype(np.float32)


def todays_batches(cache, rows, y, batch_size, seed, weights=None):
    """What one epoch fed the model before the loader persisted: the same seeded draw, read row by row."""
    order = distributed.epoch_batches(len(rows), batch_size, torch.Generator().manual_seed(seed), weights)
    return [(np.stack([cache[rows[i]] for i in batch]), y[batch]) for batch in order]


def test_the_dataset_pickles_small_whatever_the_cache_size(tmp_path):
    small, large = disk_cache(tmp_path / "s.npy", 8), disk_cache(tmp_path / "l.npy", 2048, size=32)
    assert len(pickle.dumps(large)) > large.nbytes  # a memmap pickles with all its data
    sizes = [len(pickle.dumps(CachedImages(c, np.arange(8), labels(8)))) for c in (small, large)]
    assert max(sizes) < 10_000 and abs(sizes[0] - sizes[1]) < 200
    copy = pickle.loads(pickle.dumps(CachedImages(large, [5, 3])))
    assert np.array_equal(copy[0].numpy(), large[5]) and np.array_equal(copy.__getitems__([1, 0]).numpy(),
                                                                         large[[3, 5]])


def test_an_in_memory_array_still_travels_whole(tmp_path):
    array = np.arange(4 * 4 * 2 * 2, dtype=np.uint8).reshape(4, 4, 2, 2)
    copy = pickle.loads(pickle.dumps(CachedImages(array, [2, 0])))
    assert np.array_equal(copy.__getitems__([0, 1]).numpy(), array[[2, 0]])


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_workers_under_spawn_and_forkserver_give_todays_batches(tmp_path, method):
    n, batch_size = 40, 8
    cache, y = disk_cache(tmp_path / "c.npy", n), labels(n)
    rows = np.random.default_rng(2).permutation(n)  # cache rows out of order, as folds give them
    data = CachedImages(cache, rows, y)
    loader = training_loader(data, batch_size, Ranks(), seed_of=lambda e: 1000 + e, workers=2)
    loader.multiprocessing_context = method
    for epoch in (1, 2):  # the same loader (and its workers) for both epochs
        loader.batch_sampler.set_epoch(epoch)
        got = list(loader)
        want = todays_batches(cache, rows, y, batch_size, 1000 + epoch)
        assert len(got) == len(want) == n // batch_size
        for (x, t), (wx, wt) in zip(got, want):
            assert np.array_equal(x.numpy(), wx) and np.array_equal(t.numpy(), wt)


def test_a_fresh_loader_at_epoch_k_gives_the_batches_of_a_long_lived_one(tmp_path):
    cache, y = disk_cache(tmp_path / "c.npy", 30), labels(30)
    weights = np.linspace(1, 3, 30)
    long_lived = training_loader(CachedImages(cache, np.arange(30), y), 4, Ranks(), weights=weights,
                                 seed_of=lambda e: e)
    for epoch in (1, 2, 3):
        long_lived.batch_sampler.set_epoch(epoch)
        seen = [t for _, t in long_lived]
    fresh = training_loader(CachedImages(cache, np.arange(30), y), 4, Ranks(), weights=weights, seed_of=lambda e: e)
    fresh.batch_sampler.set_epoch(3)
    assert all(torch.equal(a, b) for a, b in zip(seen, (t for _, t in fresh)))


def test_ranks_split_each_global_batch_and_together_read_it_all(tmp_path):
    cache, y = disk_cache(tmp_path / "c.npy", 24), labels(24)
    data = CachedImages(cache, np.arange(24), y)
    shares = []
    for rank in (0, 1):
        loader = training_loader(data, 8, Ranks(rank, 2), seed_of=lambda e: 7)
        loader.batch_sampler.set_epoch(1)
        shares.append([t for _, t in loader])
    whole = training_loader(data, 8, Ranks(), seed_of=lambda e: 7)
    whole.batch_sampler.set_epoch(1)
    for a, b, full in zip(*shares, (t for _, t in whole)):
        assert len(a) == len(b) == 4 and torch.equal(torch.cat([a, b]), full)


def test_an_epoch_must_be_set_before_the_loader_is_read(tmp_path):
    data = CachedImages(disk_cache(tmp_path / "c.npy", 8), np.arange(8), labels(8))
    with pytest.raises(RuntimeError, match="set_epoch"):
        list(training_loader(data, 4, Ranks(), seed_of=lambda e: e))


def test_inference_batches_come_in_row_order(tmp_path):
    cache = disk_cache(tmp_path / "c.npy", 10)
    rows = [9, 2, 5, 0, 7]
    x = torch.cat(list(make_loader(CachedImages(cache, rows), 2)))
    assert np.array_equal(x.numpy(), cache[rows])


def test_a_cpu_job_computes_on_one_thread_whatever_it_is_given(monkeypatch):
    """So that CPU results do not depend on the cores a machine gives a job (tests/test_slurm.py compares
    a cluster run with a local one byte for byte)."""
    import torch

    from hpa.runtime.device import compute_threads

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute_threads(8) == compute_threads(1) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compute_threads(8) == 8 and compute_threads(0) == 1

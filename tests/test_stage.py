"""Staging the cache to node-local scratch (the scratch config key)."""

import os
import shutil
from collections import namedtuple

import numpy as np
import pytest

from hpa.data.stage import stage


@pytest.fixture
def cache(tmp_path):
    folder = tmp_path / "shared/results/cache"
    folder.mkdir(parents=True)
    np.save(folder / "train.npy", np.arange(4 * 8 * 8, dtype=np.uint8).reshape(1, 4, 8, 8))
    (folder / "train.csv").write_text("Id,row,ok\na,0,True\n")
    return [folder / "train.npy", folder / "train.csv"]


def test_without_scratch_the_cache_is_read_in_place(cache):
    assert stage(cache, None) == [str(p) for p in cache]


def test_the_copy_has_the_originals_bytes_size_and_mtime(cache, tmp_path):
    staged = stage(cache, str(tmp_path / "local"))
    for source, copy in zip(cache, map(type(cache[0]), staged)):
        assert copy.is_relative_to(tmp_path / "local") and copy.name == source.name
        assert copy.read_bytes() == source.read_bytes()
        assert copy.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert np.load(staged[0], mmap_mode="r").shape == (1, 4, 8, 8)


def test_a_current_copy_is_reused_and_a_stale_one_replaced(cache, tmp_path):
    npy = type(cache[0])(stage(cache, str(tmp_path / "local"))[0])
    # Same size and mtime, other bytes: only a reused copy keeps them.
    mtime = npy.stat().st_mtime_ns
    marked = bytearray(npy.read_bytes())
    marked[-1] ^= 0xFF
    npy.write_bytes(bytes(marked))
    os.utime(npy, ns=(mtime, mtime))
    stage(cache, str(tmp_path / "local"))
    assert npy.read_bytes() == bytes(marked)
    # The original changes (a rebuilt cache): the copy follows.
    os.utime(cache[0], ns=(mtime + 10**9, mtime + 10**9))
    stage(cache, str(tmp_path / "local"))
    assert npy.read_bytes() == cache[0].read_bytes()


def test_environment_variables_are_expanded_on_the_node(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "job_tmp"))
    assert stage(cache, "$TMPDIR")[0].startswith(str(tmp_path / "job_tmp"))
    monkeypatch.delenv("HPA_NO_SUCH_SCRATCH", raising=False)
    with pytest.raises(ValueError, match=r"\$HPA_NO_SUCH_SCRATCH.*not set"):
        stage(cache, "$HPA_NO_SUCH_SCRATCH/hpa")


def test_two_workflows_caches_stay_apart(cache, tmp_path):
    other = tmp_path / "other/results/cache/train.npy"
    other.parent.mkdir(parents=True)
    shutil.copy(cache[0], other)
    assert stage([cache[0]], str(tmp_path / "local")) != stage([other], str(tmp_path / "local"))


def test_too_little_scratch_space_is_refused_naming_the_fix(cache, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10, 10, 0))
    with pytest.raises(OSError, match="only 0.0 GiB free.*scratch: null"):
        stage(cache, str(tmp_path / "local"))

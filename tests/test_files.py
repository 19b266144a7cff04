"""Atomic writes: never a half-written file, and the mode the user's umask asks for."""

import os
import stat

import pandas as pd
import pytest

from hpa.files import atomic_path, write_csv


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_keep_the_users_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "x.csv").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "y.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []

"""Staging the image cache to node-local scratch, for jobs on a cluster's shared filesystem.

A training job reads random rows of the cache every epoch; from a shared filesystem, ten such
jobs at once compete for it. With ``scratch`` set (config key), each training and inference
job copies the cache to the node's own disk first and reads it there. A copy whose size and
modification time match the original is reused, so jobs that follow on the same node start at
once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from pathlib import Path

from hpa.files import atomic_path

log = logging.getLogger(__name__)


def scratch_dir(scratch: str) -> Path:
    """The folder ``scratch`` names on this node, with environment variables such as $TMPDIR expanded."""
    root = Path(os.path.expandvars(scratch)).expanduser()
    if "$" in str(root):
        raise ValueError(
            f"scratch: {scratch!r} names an environment variable that is not set on {os.uname().nodename}; "
            "name a folder, or a variable the scheduler sets in every job (Slurm: $TMPDIR on most sites)"
        )
    return root


def is_copy(source: Path, target: Path) -> bool:
    """Whether ``target`` is a finished copy of ``source``: same size, same modification time."""
    if not target.exists():
        return False
    a, b = source.stat(), target.stat()
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def copy_preserving_mtime(source: Path, target: Path) -> None:
    free = shutil.disk_usage(target.parent).free
    size = source.stat().st_size
    if free < size:
        raise OSError(
            f"staging {source} ({size / 2**30:.1f} GiB) to {target.parent}: only {free / 2**30:.1f} GiB free "
            "there; ask the scheduler for more local disk, or set scratch: null to read the cache in place"
        )
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        stat = source.stat()
        os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what is_copy compares


def stage(paths, scratch: str | None) -> list[str]:
    """Paths to read ``paths`` from: node-local copies under ``scratch``, or the paths themselves if it is None.

    Files of one folder share a folder of scratch named for it, so that two workflows staging
    on one node keep their caches apart. A lock per file lets two jobs starting on one node at
    once copy it once.
    """
    if not scratch:
        return [str(p) for p in paths]
    staged = []
    for path in map(Path, paths):
        source = path.resolve()
        folder = hashlib.sha256(str(source.parent).encode()).hexdigest()[:12]
        target = scratch_dir(scratch) / "hpa-cache" / folder / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(f".{target.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if is_copy(source, target):
                log.info("staged copy of %s is current: %s", path, target)
            else:
                log.info("staging %s (%.1f MiB) to %s", path, source.stat().st_size / 2**20, target)
                copy_preserving_mtime(source, target)
        staged.append(str(target))
    return staged

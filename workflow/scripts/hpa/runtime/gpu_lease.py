"""Which GPUs a job may use: a lock file per device, taken before CUDA starts.

Snakemake's ``--resources gpu=4`` limits how many GPU jobs run at once but does not
tell a job which GPU is its own, so every job would land on GPU 0. Each GPU job
instead takes ``n`` free devices, one ``flock`` on ``gpu<index>.lock`` in a lock
directory shared by all jobs on the machine, holds them for its life and sets
``CUDA_VISIBLE_DEVICES`` to them. The kernel drops a lock when its holder exits,
however it exits (a job killed with SIGKILL frees its GPU), so no lock is ever stale.

Which devices exist: ``$HPA_GPUS`` (comma-separated indices, e.g. ``0,1,2,3``; empty for
none) if set, else the GPUs ``nvidia-smi -L`` lists. A ``CUDA_VISIBLE_DEVICES`` that is
already set (by Slurm, or by the user) is the job's own allocation and is left alone.

This module imports nothing from torch: the entry scripts lease their GPUs before
importing torch, so no ``torch.cuda`` call can read the devices before they are chosen.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEVICES_VAR = "HPA_GPUS"
LOCK_DIR_VAR = "HPA_GPU_LOCK_DIR"
WAIT_VAR = "HPA_GPU_WAIT"
# A training job may run a day (the time the Slurm profile gives it), so a job queued behind one
# may wait as long; longer than that, something outside this run holds the GPUs.
DEFAULT_WAIT_S = 24 * 3600


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_VAR) or Path(tempfile.gettempdir()) / "hpa-gpu-locks")


def machine_gpus() -> list[int]:
    """Indices of this machine's GPUs: ``$HPA_GPUS`` if set, else ``nvidia-smi -L``; [] without either."""
    given = os.environ.get(DEVICES_VAR)
    if given is not None:
        return parse_indices(given)
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return []
    except subprocess.TimeoutExpired:
        log.warning("nvidia-smi -L did not answer in 60 s; running without choosing a GPU")
        return []
    if listing.returncode != 0:
        log.warning("nvidia-smi -L failed (%s); running without choosing a GPU",
                    listing.stderr.strip() or f"exit {listing.returncode}")
        return []
    # "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-...)"; MIG instances are indented lines below.
    return [int(m.group(1)) for m in re.finditer(r"^GPU (\d+):", listing.stdout, re.MULTILINE)]


def parse_indices(text: str) -> list[int]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not all(item.isdigit() for item in items):
        raise ValueError(
            f"{DEVICES_VAR}={text!r}: expected comma-separated GPU indices such as 0,1,2,3 "
            f"(or an empty value for no GPUs)"
        )
    return [int(item) for item in items]


def try_lock(path: Path, holder: str) -> int | None:
    """An open, exclusively flocked descriptor on ``path``, or None while another job holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(PermissionError):  # another user's file: it is already 0666
        os.fchmod(fd, 0o666)  # past the umask, so other users' jobs can lock it too
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    # Who holds it, for the log line of a job that waits (the lock itself is the flock).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {holder}\n".encode(), 0)
    return fd


def holders(directory: Path, devices: list[int]) -> str:
    """Who holds the devices, as their lock files say (a free device's file is empty)."""
    lines = []
    for index in devices:
        with contextlib.suppress(OSError):
            if text := (directory / f"gpu{index}.lock").read_text().strip():
                lines.append(f"gpu{index}: {text}")
    return "; ".join(lines)


def acquire(n: int, devices: list[int], directory: Path, holder: str) -> dict[int, int] | None:
    """Locks on ``n`` of ``devices`` (index -> descriptor), or None, holding nothing, if fewer are free.

    All or nothing: a job that kept some locks while waiting for more could deadlock with
    another doing the same (two DDP jobs holding one GPU each, both waiting for a second).
    """
    held = {}
    for index in devices:
        fd = try_lock(directory / f"gpu{index}.lock", holder)
        if fd is not None:
            held[index] = fd
            if len(held) == n:
                return held
    release(held)
    return None


def release(held: dict[int, int]) -> None:
    for fd in held.values():
        os.ftruncate(fd, 0)  # no longer names this job as the holder
        os.close(fd)  # closing the last descriptor drops the flock


def shared_dir(directory: Path) -> Path:
    """The lock directory, open to every user's jobs (sticky, like /tmp) when this user creates it."""
    if not directory.exists():
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):
            directory.chmod(0o1777)
    return directory


def wait_limit() -> float:
    text = os.environ.get(WAIT_VAR, str(DEFAULT_WAIT_S))
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{WAIT_VAR}={text!r}: expected the seconds a job may wait for a free GPU") from None


def wait_for(n: int, devices: list[int], directory: Path, holder: str, timeout: float, poll: float):
    """Locks on ``n`` of ``devices``, polling every ``poll`` s while too few are free."""
    held = acquire(n, devices, directory, holder)
    if held is not None:
        return held
    log.info("waiting for %d free GPU(s) of %d; held by other jobs: %s (locks in %s)",
             n, len(devices), holders(directory, devices), directory)
    deadline = time.monotonic() + timeout
    while held is None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no {n} free GPU(s) of {len(devices)} after {timeout:.0f} s; the locks in {directory} are held "
                f"by {holders(directory, devices)}. Wait for those jobs, or raise ${WAIT_VAR} (seconds)"
            )
        time.sleep(poll)
        held = acquire(n, devices, directory, holder)
    return held


@contextlib.contextmanager
def lease_gpus(n: int, holder: str = "", timeout: float | None = None, poll: float = 1.0):
    """Hold ``n`` free GPUs for the body and expose only them through ``CUDA_VISIBLE_DEVICES``.

    Yields the leased indices, or None where nothing is chosen: ``n`` is 0, the machine has
    no GPU, or ``CUDA_VISIBLE_DEVICES`` was already set. Waits while fewer than ``n`` are
    free, up to ``timeout`` seconds (default ``$HPA_GPU_WAIT``, else a day).
    """
    # The last line of defence only: torch.cuda.is_available() can start the CUDA driver
    # without marking torch's CUDA state initialised, hence the scripts' import order.
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        raise RuntimeError("lease_gpus() after CUDA started: lease the GPUs before anything calls torch.cuda")
    if n <= 0:
        yield None
        return
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        log.info("CUDA_VISIBLE_DEVICES=%s was set for this job (e.g. by Slurm); using it as given",
                 os.environ["CUDA_VISIBLE_DEVICES"])
        yield None
        return
    devices = machine_gpus()
    if not devices:
        yield None
        return
    if n > len(devices):
        raise RuntimeError(
            f"this job needs {n} GPUs but the machine has {len(devices)} ({', '.join(map(str, devices))}); "
            f"lower the model's processes or run it where {n} GPUs are free"
        )
    directory = shared_dir(lock_dir())
    held = wait_for(n, devices, directory, holder, wait_limit() if timeout is None else timeout, poll)
    visible = ",".join(map(str, held))
    log.info("leased GPU %s of %s (locks in %s); CUDA_VISIBLE_DEVICES=%s",
             visible, ",".join(map(str, devices)), directory, visible)
    order_given = "CUDA_DEVICE_ORDER" in os.environ
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    # CUDA's own order puts the fastest GPU first; nvidia-smi's (and the locks') is the PCI bus order.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        yield list(held)
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]
        if not order_given:
            del os.environ["CUDA_DEVICE_ORDER"]
        release(held)

"""Which GPUs a job may use: a lock file per device, taken before CUDA starts.

Snakemake's ``--resources gpu=4`` limits how many GPU jobs run at once but does not
tell a job which GPU is its own, so every job would land on GPU 0. Each GPU job
instead takes ``n`` free devices, one ``flock`` on ``gpu<index>.lock`` in a lock
directory shared by all jobs on the machine, holds them for its life and sets
``CUDA_VISIBLE_DEVICES`` to them. The kernel drops a lock when its holder exits,
however it exits (a job killed with SIGKILL frees its GPU), so no lock is ever stale.

A job that *shares* a GPU (a small model: ``hpa.runtime.gpu_memory``) takes a shared
``flock`` on ``gpu<index>.lock`` instead, which keeps whole-GPU jobs off that GPU but not other
sharers, and exclusive flocks on as many of the GPU's ``SLOTS_PER_GPU`` slot files
(``gpu<index>.slot<k>``) as its memory needs: what the GPU's sharers hold never exceeds its
memory. Sharers fill the GPUs from the last one, whole-GPU jobs take them from the first, so that
small jobs leave whole GPUs free for the large as long as they can.

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

from hpa.runtime.gpu_memory import SLOTS_PER_GPU

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


def try_lock(path: Path, holder: str, shared: bool = False) -> int | None:
    """An open, flocked descriptor on ``path`` (exclusively, or ``shared``), or None while another job
    holds it (exclusively, or at all)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(PermissionError):  # another user's file: it is already 0666
        os.fchmod(fd, 0o666)  # past the umask, so other users' jobs can lock it too
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not shared:  # sharers name themselves in their slot files, not in the GPU's
        # Who holds it, for the log line of a job that waits (the lock itself is the flock).
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {holder}\n".encode(), 0)
    return fd


def slot_path(directory: Path, index: int, slot: int) -> Path:
    return directory / f"gpu{index}.slot{slot}"


def holders(directory: Path, devices: list[int]) -> str:
    """Who holds the devices, as their lock and slot files say (a free one's file is empty)."""
    lines = []
    for index in devices:
        files = [directory / f"gpu{index}.lock"] + [slot_path(directory, index, k) for k in range(SLOTS_PER_GPU)]
        texts = []
        for path in files:
            with contextlib.suppress(OSError):
                if (text := path.read_text().strip()) and text not in texts:
                    texts.append(text)
        lines += [f"gpu{index}: {text}" for text in texts]
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


def acquire_share(slots: int, devices: list[int], directory: Path, holder: str) -> dict[int, list[int]] | None:
    """``slots`` slots of one of ``devices`` ({index: [gate, slot descriptors...]}), or None, holding
    nothing, where no GPU free of whole-GPU jobs has that many free. Tries the last GPU first."""
    for index in reversed(devices):
        gate = try_lock(directory / f"gpu{index}.lock", holder, shared=True)
        if gate is None:
            continue  # a whole-GPU job holds it
        held = []
        for k in range(SLOTS_PER_GPU):
            if (fd := try_lock(slot_path(directory, index, k), holder)) is not None:
                held.append(fd)
                if len(held) == slots:
                    return {index: [gate, *held]}
        release(dict(enumerate(held)))
        os.close(gate)
    return None


def release(held: dict[int, int | list[int]]) -> None:
    """Drop the locks of ``held`` (a descriptor, or a shared gate and its slots, per GPU)."""
    for fds in held.values():
        for fd in fds if isinstance(fds, list) else [fds]:
            os.ftruncate(fd, 0)  # no longer names this job as the holder (a shared gate names no one)
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


def wait_for(take, wanted: str, devices: list[int], directory: Path, timeout: float, poll: float):
    """What ``take()`` returns once it is not None (the locks on ``wanted``), polling every ``poll`` s."""
    held = take()
    if held is not None:
        return held
    log.info("waiting for %s of %d; held by other jobs: %s (locks in %s)",
             wanted, len(devices), holders(directory, devices), directory)
    deadline = time.monotonic() + timeout
    while held is None:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no {wanted} of {len(devices)} after {timeout:.0f} s; the locks in {directory} are held "
                f"by {holders(directory, devices)}. Wait for those jobs, or raise ${WAIT_VAR} (seconds)"
            )
        time.sleep(poll)
        held = take()
    return held


def taker(n: int, share: int, devices: list[int], directory: Path, holder: str):
    """A function taking the locks the job needs, and what it waits for, in words."""
    if n > 0:
        return (lambda: acquire(n, devices, directory, holder)), f"{n} free GPU(s)"
    return (lambda: acquire_share(share, devices, directory, holder)), f"{share} free slot(s) of one GPU"


@contextlib.contextmanager
def lease_gpus(n: int, holder: str = "", timeout: float | None = None, poll: float = 1.0, share: int = 0):
    """Hold ``n`` free GPUs for the body, or with ``n`` 0 ``share`` slots of one GPU (a job that shares
    it), and expose only them through ``CUDA_VISIBLE_DEVICES``.

    Yields the leased indices, or None where nothing is chosen: ``n`` and ``share`` are 0, the
    machine has no GPU, or ``CUDA_VISIBLE_DEVICES`` was already set. Waits while too few are
    free, up to ``timeout`` seconds (default ``$HPA_GPU_WAIT``, else a day).
    """
    # The last line of defence only: torch.cuda.is_available() can start the CUDA driver
    # without marking torch's CUDA state initialised, hence the scripts' import order.
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        raise RuntimeError("lease_gpus() after CUDA started: lease the GPUs before anything calls torch.cuda")
    if n <= 0 and share <= 0:
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
    take, wanted = taker(n, min(share, SLOTS_PER_GPU), devices, directory, holder)
    held = wait_for(take, wanted, devices, directory, wait_limit() if timeout is None else timeout, poll)
    visible = ",".join(map(str, held))
    log.info("leased GPU %s of %s%s (locks in %s); CUDA_VISIBLE_DEVICES=%s", visible, ",".join(map(str, devices)),
             "" if n > 0 else f", {share} of its {SLOTS_PER_GPU} slots", directory, visible)
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

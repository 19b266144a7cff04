"""GPU leases: concurrent jobs (real processes) on 4 stand-in GPUs take different ones."""

import ast
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from hpa.runtime.gpu_lease import acquire, acquire_share, holders, lease_gpus, machine_gpus, release

# A GPU job in miniature: lease n GPUs, print what CUDA would see, hold them until told to stop.
JOB = """
import logging, os, sys, time
from pathlib import Path
from hpa.runtime.gpu_lease import lease_gpus

logging.basicConfig(level=logging.INFO)
n, stop, share = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
with lease_gpus(n, holder=stop.name, poll=0.05, share=share):
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    while not stop.exists():
        time.sleep(0.05)
"""


class Job:
    def __init__(self, tmp_path, name: str, n: int = 1, share: int = 0, **env):
        self.out, self.err, self.stop = (tmp_path / f"{name}.{ext}" for ext in ("out", "err", "stop"))
        base = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        env = {**base, "PYTHONPATH": str(REPO / "workflow/scripts"), "HPA_GPUS": "0,1,2,3",
               "HPA_GPU_LOCK_DIR": str(tmp_path / "locks"), **env}
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([sys.executable, "-c", JOB, str(n), str(self.stop), str(share)],
                                            stdout=out, stderr=err, env=env)

    def devices(self, timeout: float = 20.0) -> str:
        """What the job set CUDA_VISIBLE_DEVICES to, once it holds its GPUs."""
        deadline = time.monotonic() + timeout
        while not self.out.read_text().endswith("\n"):
            if self.process.poll() is not None:
                raise AssertionError(f"job exited {self.process.returncode}:\n{self.err.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"job holds no GPU after {timeout} s:\n{self.err.read_text()}")
            time.sleep(0.05)
        return self.out.read_text().strip()

    def waiting(self, timeout: float = 20.0) -> bool:
        """Says in its log that it waits for GPUs (within ``timeout`` s: a loaded machine starts jobs slowly),
        and holds none."""
        deadline = time.monotonic() + timeout
        while "waiting" not in self.err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a few polls more: it must go on waiting, not take a GPU
        return self.process.poll() is None and not self.out.read_text() and "waiting" in self.err.read_text()

    def finish(self):
        self.stop.touch()
        assert self.process.wait(timeout=20) == 0, self.err.read_text()


@pytest.fixture
def jobs(tmp_path):
    started = []

    def start(name, n=1, share=0, **env):
        started.append(Job(tmp_path, name, n, share, **env))
        return started[-1]

    yield start
    for job in started:
        job.process.kill()
        job.process.wait()


@pytest.fixture
def four(jobs):
    """Four running one-GPU jobs, by the GPU each holds."""
    running = [jobs(f"job{k}") for k in range(4)]
    return {job.devices(): job for job in running}


def test_four_concurrent_jobs_take_four_different_gpus(four):
    assert sorted(four) == ["0", "1", "2", "3"]


def test_a_fifth_job_waits_until_one_finishes_and_takes_its_gpu(four, jobs):
    fifth = jobs("fifth")
    assert fifth.waiting(), fifth.err.read_text()
    assert "job2.stop" in fifth.err.read_text(), "the waiting line names who holds the GPUs"
    four["2"].finish()
    assert fifth.devices() == "2"


def test_a_job_killed_with_sigkill_frees_its_gpu(four, jobs):
    fifth = jobs("fifth")
    assert fifth.waiting()
    four["1"].process.send_signal(signal.SIGKILL)
    assert fifth.devices() == "1"


def test_a_ddp_job_takes_two_distinct_gpus(jobs):
    pairs = [jobs(f"ddp{k}", n=2).devices() for k in range(2)]
    gpus = [gpu for pair in pairs for gpu in pair.split(",")]
    assert all(len(pair.split(",")) == 2 for pair in pairs) and sorted(gpus) == ["0", "1", "2", "3"]


def test_a_ddp_job_waits_for_two_free_gpus_without_holding_one(jobs):
    singles = {job.devices(): job for job in (jobs(f"job{k}") for k in range(3))}
    ddp = jobs("ddp", n=2)
    assert ddp.waiting(), "one free GPU is not enough"
    late = jobs("late")
    assert late.devices() == "3", "the waiting DDP job must not sit on the free GPU"
    late.finish()
    singles["0"].finish()
    assert ddp.devices() == "0,3"


def test_cuda_visible_devices_set_by_the_caller_is_respected(four, jobs, tmp_path):
    slurm = jobs("slurm", CUDA_VISIBLE_DEVICES="7")
    assert slurm.devices() == "7", "a job given its GPUs (e.g. by Slurm) neither waits nor changes them"
    assert "gpu7.lock" not in os.listdir(tmp_path / "locks")


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """This process as a job on a machine whose GPUs are ``$HPA_GPUS``."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setenv("HPA_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return monkeypatch


def test_the_lease_sets_cuda_visible_devices_for_its_body_only(machine):
    machine.setenv("HPA_GPUS", "4,5")
    with lease_gpus(1) as devices:
        assert devices == [4] and os.environ["CUDA_VISIBLE_DEVICES"] == "4"
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID", "the locks' indices are nvidia-smi's"
        with lease_gpus(1) as other:
            assert other is None, "CUDA_VISIBLE_DEVICES is set now: a nested lease changes nothing"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and "CUDA_DEVICE_ORDER" not in os.environ


def fake_nvidia_smi(directory, output: str, code: int = 0):
    script = directory / "nvidia-smi"
    # Python, not sh: a test may leave nothing else on PATH.
    script.write_text(f"#!{sys.executable}\nimport sys\nprint({output!r})\nsys.exit({code})\n")
    script.chmod(0o755)


def test_without_gpus_the_lease_does_nothing(machine, tmp_path):
    fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H100 (UUID: GPU-a)")
    machine.setenv("PATH", str(tmp_path))
    machine.setenv("HPA_GPUS", "")  # none, whatever nvidia-smi says
    with lease_gpus(1) as devices:
        assert devices is None and "CUDA_VISIBLE_DEVICES" not in os.environ
    machine.delenv("HPA_GPUS")
    (tmp_path / "nvidia-smi").unlink()
    with lease_gpus(2) as devices:
        assert devices is None
    assert not (tmp_path / "locks").exists()


def test_the_gpus_are_those_nvidia_smi_lists(machine, tmp_path, caplog):
    machine.delenv("HPA_GPUS", raising=False)
    machine.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    fake_nvidia_smi(tmp_path, "GPU 0: NVIDIA H100 (UUID: GPU-a)\nGPU 1: NVIDIA H100 (UUID: GPU-b)\n"
                              "  MIG 1g.10gb Device 0: (UUID: MIG-c)")
    assert machine_gpus() == [0, 1]
    fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the driver", code=9)
    assert machine_gpus() == [] and "nvidia-smi -L failed" in caplog.text


def test_waiting_too_long_names_the_lock_directory_and_the_holders(four, machine, tmp_path):
    machine.setenv("HPA_GPUS", "0,1,2,3")
    with (
        pytest.raises(TimeoutError, match=re.escape(str(tmp_path / "locks"))) as error,
        lease_gpus(1, timeout=0.3, poll=0.05),
    ):
        pass
    assert "job0.stop" in str(error.value) and "HPA_GPU_WAIT" in str(error.value)


def test_more_gpus_than_the_machine_has_is_refused_at_once(machine):
    machine.setenv("HPA_GPUS", "0")
    # timeout: a lease that waited instead of refusing would fail fast, not hang the test
    with pytest.raises(RuntimeError, match="needs 2 GPUs but the machine has 1"), lease_gpus(2, timeout=1):
        pass


@pytest.mark.parametrize("var,value", [("HPA_GPUS", "0,gpu1"), ("HPA_GPU_WAIT", "an hour")])
def test_a_malformed_variable_is_refused_by_name(machine, var, value):
    machine.setenv("HPA_GPUS", "0")
    machine.setenv(var, value)
    with pytest.raises(ValueError, match=f"{var}={value!r}"), lease_gpus(1):
        pass


def test_small_jobs_share_a_gpu_and_a_whole_gpu_job_waits_for_them(jobs):
    """Real processes on one stand-in GPU: two sharers hold it together, a whole-GPU job waits for both."""
    one = {"HPA_GPUS": "0"}
    sharers = [jobs(f"small{k}", n=0, share=40, **one) for k in range(2)]
    assert [job.devices() for job in sharers] == ["0", "0"], "side by side on the same GPU"
    third = jobs("small2", n=0, share=40, **one)
    assert third.waiting(), "80 of 100 slots held: 40 more do not fit"
    whole = jobs("whole", **one)
    assert whole.waiting() and "small0.stop" in whole.err.read_text(), "the waiting line names the sharers"
    sharers[0].finish()
    assert third.devices() == "0"
    sharers[1].finish()
    third.finish()
    assert whole.devices() == "0"
    late = jobs("late", n=0, share=1, **one)
    assert late.waiting(), "no slot of a GPU held whole"


def test_sharers_fill_the_last_gpus_first_and_leave_the_first_whole(tmp_path):
    directory, devices = tmp_path, [0, 1, 2]
    quarters = [acquire_share(25, devices, directory, f"q{k}") for k in range(5)]
    assert [list(held) for held in quarters] == [[2]] * 4 + [[1]]
    assert list(acquire(1, devices, directory, "big")) == [0], "GPU 0 stays whole for a whole-GPU job"
    assert acquire(1, devices, directory, "big2") is None, "GPU 1 has a sharer, GPU 2 is full of them"
    assert acquire_share(76, devices, directory, "large") is None, "75 slots of GPU 1 are free, not 76"
    assert list(acquire_share(75, devices, directory, "fits")) == [1]
    release(quarters[4])
    release(quarters[0])
    assert list(acquire_share(25, devices, directory, "again")) == [2], "a freed slot is taken again"
    assert "q1" in holders(directory, [2]) and "big" in holders(directory, [0])


def gpu_rule_scripts() -> dict[str, str]:
    """Rule -> script of every rule whose resources ask for a GPU."""
    found = {}
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            rule, script = re.match(r"rule (\w+):", block), re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if rule and re.search(r"resources:(\n\s+(#.*|\w+=.*))*?\n\s+(gpu=|\*\*gpu_resources\()", block):
                found[rule.group(1)] = script.group(1).removeprefix("../scripts/")
    return found


def test_every_gpu_job_leases_its_gpus_before_importing_anything_that_holds_torch():
    scripts = gpu_rule_scripts()
    assert set(scripts) == {"train", "predict", "predict_new", "new_image_panels", "train_embedding", "embed",
                            "train_cell_model", "predict_cell_model"}
    for rule, script in scripts.items():
        body = ast.parse((REPO / "workflow/scripts" / script).read_text()).body
        lease = next((i for i, node in enumerate(body) if isinstance(node, ast.With)
                      and "gpu_job(snakemake" in ast.unparse(node.items[0])), None)
        assert lease is not None, f"{script} (rule {rule}) does not lease its GPUs through gpu_job"
        before = {node.module for node in body[:lease] if isinstance(node, ast.ImportFrom)}
        before |= {a.name for node in body[:lease] if isinstance(node, ast.Import) for a in node.names}
        allowed = {"hpa.files", "hpa.runtime.gpu_job"}
        assert before <= allowed, f"{script} imports {before} before its lease"
    from test_config import imports_of

    # gpu_job stages the cache to scratch before the lease, so that no GPU waits on the copy.
    for module in ("runtime/gpu_job.py",):
        outside = imports_of(REPO / "workflow/scripts/hpa" / module) - set(sys.stdlib_module_names)
        assert outside <= {"__future__", "pandas"}, f"{module} imports {outside}: it runs before torch may be imported"

# Cluster sizing: what a job asks the scheduler for (profiles/slurm). No rules here.
#
# Memory and runtime follow the job's inputs, so that one profile runs the demo on a small
# node and the real data on a large one, and grow with each attempt, so that a job killed for
# memory or time asks for more when it is resubmitted. The coefficients come from the real
# recipe (config/hpa.yaml: a ~100 GB training cache, ~8 MB manifest): there they give about
# what the jobs were measured or expected to need. Threads are what a job can use; the profile's
# max-threads caps them at the CPUs of the site's nodes.

import functools
import math

from snakemake.exceptions import WorkflowError

from hpa.runtime.gpu_lease import machine_gpus
from hpa.runtime.gpu_memory import GpuWork, request


def sized(base, per_input_mb=0.0, per_thread=0.0):
    """A resource of ``base`` plus a share per MB of the job's inputs and per thread, times the attempt."""

    def resource(wildcards, input, threads, attempt):
        return math.ceil((base + per_input_mb * input.size_mb + per_thread * threads) * attempt)

    return resource


def training_runtime(epochs):
    """Minutes of a training job: half an hour, plus time per MB of cache per epoch, times the attempt.

    ``epochs(wildcards)`` is the job's epoch count. 0.0004 min per MB-epoch puts the real
    recipe's 25 epochs over a ~100 GB cache at ~17 h, inside the 6-12 h measured on one GPU.
    """

    def resource(wildcards, input, attempt):
        return math.ceil((30 + 0.0004 * input.size_mb * epochs(wildcards)) * attempt)

    return resource


# A GPU job: the process and a loader worker per thread, plus room for a quarter of the cache
# (training) or an eighth (inference: each image is read once) to stay in the page cache.
TRAINING_MEM_MB = sized(2000, per_input_mb=1 / 4, per_thread=500)
INFERENCE_MEM_MB = sized(2000, per_input_mb=1 / 8, per_thread=500)
# Jobs that read the whole cache once: ~2 min per GB (inference: 8 dihedral views at 512 px on one GPU).
CACHE_READ_RUNTIME = sized(15, per_input_mb=2 / 1024)
# Jobs that open every source image once: they scale with the label tables, i.e. the image count.
PER_IMAGE_MEM_MB = sized(1000, per_input_mb=100, per_thread=250)
PER_IMAGE_RUNTIME = sized(10, per_input_mb=30)
# Jobs that hold every fold's embeddings (0.2 GB per fold at 100k x 512), about three times over.
EMBEDDINGS_MEM_MB = sized(2000, per_input_mb=3)
EMBEDDINGS_RUNTIME = sized(10, per_input_mb=0.1)


# A local run on a machine without a GPU (the demo on a laptop, CI): the jobs that would each
# hold a GPU run on the CPU, where they compute on one thread whatever they are given
# (hpa.runtime.device.compute_threads: results then do not depend on the core count). So they
# need not queue one behind the other for the profile's gpu=1, and each takes one core: on the
# demo's 2 cores two train side by side, the four folds in ~160 s instead of ~230 s one after
# the other. On a machine with GPUs, and on a cluster (where the node, not this machine, has
# them), every job asks for its GPUs and threads as written. Decided per job, when Snakemake
# sizes it: only then does the workflow know its executor.
@functools.cache
def _machine_gpus():
    return machine_gpus()


def cpu_only():
    return workflow.local_exec and not workflow.remote_exec and not _machine_gpus()


# Small jobs share a GPU (docs/performance.md, "Small GPU jobs share a GPU"): a local run given
# `--resources gpu=N gpu_mem_mb=TOTAL` (N GPUs of TOTAL / N MB each) sizes every GPU job by
# hpa.runtime.gpu_memory: one whose steps are too small to keep a GPU busy asks for gpu=0 and its
# estimated memory, so several run side by side; one that would keep a GPU busy (the real
# recipe's) asks for gpu=1 and all of that GPU's memory. Without gpu_mem_mb, and on a cluster
# (Slurm gives whole GPUs), every job asks for whole GPUs as before.
def gpu_capacity_mb():
    """The memory of one GPU that jobs share, MB; None where they do not share."""
    if cpu_only() or not workflow.local_exec or workflow.remote_exec:
        return None
    given = {name: workflow.global_resources[name].value for name in workflow.global_resources}
    if given.get("gpu_mem_mb") is None:
        return None
    count = given["gpu"] if given.get("gpu") is not None else len(_machine_gpus())
    if count < 1 or given["gpu_mem_mb"] < count:
        raise WorkflowError(
            f"--resources gpu_mem_mb={given['gpu_mem_mb']} gpu={count}: gpu_mem_mb is the memory of all "
            f"the GPUs together (e.g. gpu=8 gpu_mem_mb=640000 for eight 80 GB GPUs), gpu at least 1"
        )
    return given["gpu_mem_mb"] // count


def gpu_resources(work=None, whole=1):
    """A GPU job's resources, for `resources: **gpu_resources(...)`: gpu (whole GPUs), gpu_mem_mb (what
    it takes of the GPUs' memory) and gpu_capacity_mb (one GPU's, which its lease divides into slots;
    not a limit). ``work(wildcards)`` is a GpuWork (a job that may share), else the job takes
    ``whole`` GPUs (an int, or a function of the wildcards). Nothing on a CPU-only local run."""

    def asked(wildcards):
        if cpu_only():
            return 0, 0
        n = whole(wildcards) if callable(whole) else whole
        return request(work(wildcards) if work else None, gpu_capacity_mb(), n)

    return {
        "gpu": lambda wildcards: asked(wildcards)[0],
        "gpu_mem_mb": lambda wildcards: asked(wildcards)[1],
        "gpu_capacity_mb": lambda wildcards: gpu_capacity_mb() or 0,
    }


def model_work(model, training, batch_size=None, plain=True, size=None):
    """The GpuWork of a models: (or embedding:, or cells.model.train) entry at the data's image size (or
    ``size``: the cell model's crop) and channels."""
    size = size or config["data"]["image_size"]
    return GpuWork.of_model(model, size, len(VOCAB.channels), training, batch_size, plain)


def gpu_job_threads(n):
    """A GPU job's threads: ``n``, or one on a CPU-only local run (it computes on one thread there)."""
    return lambda wildcards: 1 if cpu_only() else n

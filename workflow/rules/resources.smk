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

from hpa.runtime.gpu_lease import machine_gpus


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
def _no_gpu_here():
    return not machine_gpus()


def cpu_only():
    return workflow.local_exec and not workflow.remote_exec and _no_gpu_here()


def gpus(n):
    """A job's gpu resource: ``n`` (an int, or a function of the wildcards), or none on a CPU-only local run."""
    return lambda wildcards: 0 if cpu_only() else (n(wildcards) if callable(n) else n)


def gpu_job_threads(n):
    """A GPU job's threads: ``n``, or one on a CPU-only local run (it computes on one thread there)."""
    return lambda wildcards: 1 if cpu_only() else n

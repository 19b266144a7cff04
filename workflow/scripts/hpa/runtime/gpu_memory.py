"""What a GPU job needs of a GPU: its memory, estimated from the model, and whether it needs the whole card.

The workflow reads this when it sizes jobs (workflow/rules/resources.smk), so it imports nothing
from torch. A job *shares* a GPU when its steps are too small to keep one busy, and then asks
for its estimated memory (``gpu_mem_mb``) of the card; a job whose steps saturate a GPU, or whose
model this table does not know, asks for whole GPUs as before. docs/performance.md ("Small GPU
jobs share a GPU") gives the derivation and the figures.

Per-architecture constants, measured on this repository's models (4 input channels, 28 classes,
torchvision backbones as ``hpa.models.factory`` builds them) on the CPU, autograd's saved tensors
counted by a ``saved_tensors_hooks`` pack hook as ``tests/test_gpu_share.py`` does (it re-measures
resnet18 and branchnet), the multiply-adds by forward hooks on the convolutions and linear layers:

- ``params``: parameter count.
- ``saved``: bytes autograd keeps for the backward pass per input pixel of one image, in fp32
  (the slope between 64 and 128 px of the saved tensors' unique storages). bf16 autocast keeps
  some of them in half the bytes: fp32 is the conservative figure.
- ``live``: the largest input + output of any module in an inference forward, bytes per pixel.
- ``gmac``: multiply-adds of one forward pass at 224 px, in 10^9 (the "GFLOPs" usually quoted).
"""

from __future__ import annotations

import dataclasses
import math

ARCHS = {
    "resnet18": {"params": 11_194_012, "saved": 446, "live": 128, "gmac": 1.85},
    "resnet34": {"params": 21_302_172, "saved": 646, "live": 128, "gmac": 3.70},
    "resnet50": {"params": 23_568_540, "saved": 1716, "live": 128, "gmac": 4.13},
    "resnet152": {"params": 58_204_316, "saved": 3540, "live": 128, "gmac": 11.55},
    "densenet121": {"params": 6_985_692, "saved": 2602, "live": 128, "gmac": 2.87},
    "efficientnet_b0": {"params": 4_043_704, "saved": 1760, "live": 192, "gmac": 0.39},
    "vgg16": {"params": 134_375_836, "saved": 1462, "live": 512, "gmac": 15.5},
    # Each channel has its own branch: its activations and compute grow with the channels (4 here).
    "branchnet": {"params": 1_879_004, "saved": 1308, "live": 512, "gmac": 1.18},
}
PER_CHANNEL = {"branchnet"}
MEASURED_CHANNELS = 4

# The CUDA context with cuDNN's and cuBLAS's kernels loaded (0.5-1 GB on Hopper), their
# workspaces, and what the caching allocator holds beyond the live tensors: the H200 run
# saw "a few GB" per demo job, of which the model itself is ~0.3 GB. Taken at the top of that.
CONTEXT_MB = 4000
# Training: fp32 weight, gradient and Adam's two moments (16 B), plus autocast's cast copy of the weights.
TRAIN_BYTES_PER_PARAM = 20
# Backward holds each layer's activation gradients beside what autograd saved, and the allocator
# rounds blocks up: half as much again as the saved tensors.
SAVED_MARGIN = 1.5
# Inference: a densenet block's concatenations, im2col/workspace buffers, allocator rounding.
LIVE_MARGIN = 4.0
# The input batch as float32: decoded, augmented and normalised copies, and the next batch in flight.
INPUT_COPIES = 4
# TTA: predict may run all 8 dihedral views of a batch as one forward.
MAX_VIEWS = 8
# A step (forward + backward, ~3 forwards) of more multiply-adds than this keeps a GPU busy alone:
# 200 GMAC is ~2 ms of an H200 at the measured rate (ResNet34, 512 px: 1,609 images/s of
# 3 x 19.3 GMAC = 93 TMAC/s), about the host time of the ~300 kernel launches of a bare step. A
# smaller step leaves the GPU idle most of the time, and another job can use it; a larger one
# would only slow the other down. Also the size above which cuDNN's autotuning pays for itself.
WHOLE_GPU_GMAC = 200.0
# The lease divides each GPU into this many equal slots; a share is a whole number of them.
SLOTS_PER_GPU = 100


@dataclasses.dataclass(frozen=True)
class GpuWork:
    """What a GPU job computes: a model at an input size, a batch, training or inference."""

    arch: str
    image_size: int
    batch_size: int
    channels: int = MEASURED_CHANNELS
    training: bool = True
    processes: int = 1  # DistributedDataParallel processes, one GPU each
    plain: bool = True  # the table's model: linear head, no decoder, no extra blocks

    @classmethod
    def of_model(cls, model: dict, image_size: int, channels: int, training: bool = True,
                 batch_size: int | None = None, plain: bool = True) -> GpuWork:
        """The work of a ``models:`` (or ``embedding:``) entry, defaults filled; ``batch_size`` for
        inference at another batch than training's, ``plain=False`` for anything enlarging the model."""
        return cls(
            arch=model["arch"], image_size=image_size, batch_size=batch_size or model["batch_size"],
            channels=channels, training=training, processes=model.get("processes", 1) if training else 1,
            plain=plain and model.get("head", "linear") == "linear" and not model.get("reconstruction_weight")
            and not model.get("extra_blocks"),
        )

    @property
    def known(self) -> bool:
        return self.plain and self.arch in ARCHS

    @property
    def images_per_pass(self) -> int:
        return self.batch_size if self.training else self.batch_size * MAX_VIEWS


def _pixels(work: GpuWork) -> float:
    return float(work.image_size) ** 2


def _channel_factor(work: GpuWork) -> float:
    return work.channels / MEASURED_CHANNELS if work.arch in PER_CHANNEL else 1.0


def step_gmac(work: GpuWork) -> float:
    """Multiply-adds (10^9) of one step: forward and backward of a batch, or one forward of a batch's views."""
    per_image = ARCHS[work.arch]["gmac"] * _pixels(work) / 224**2 * _channel_factor(work)
    return per_image * work.images_per_pass * (3 if work.training else 1)


def estimate_mb(work: GpuWork) -> int:
    """Peak GPU memory of one process of the job, MB (10^6 bytes), from the table; conservative."""
    arch = ARCHS[work.arch]
    n, pixels = work.images_per_pass, _pixels(work)
    inputs = n * work.channels * pixels * 4 * INPUT_COPIES
    if work.training:
        weights = arch["params"] * TRAIN_BYTES_PER_PARAM
        activations = n * pixels * arch["saved"] * SAVED_MARGIN * _channel_factor(work)
    else:
        weights = arch["params"] * 6  # fp32 weights and their half-precision cast
        activations = n * pixels * arch["live"] * LIVE_MARGIN * _channel_factor(work)
    return math.ceil(CONTEXT_MB + (weights + activations + inputs) / 1e6)


def compute_bound(work: GpuWork) -> bool:
    """Whether one step keeps a GPU busy by itself (an unknown model counts as one that does)."""
    return not work.known or step_gmac(work) >= WHOLE_GPU_GMAC


def request(work: GpuWork | None, capacity_mb: int | None, whole: int = 1) -> tuple[int, int]:
    """What the job asks Snakemake for: (whole GPUs, gpu_mem_mb).

    Without a capacity (no sharing: a cluster, or a run not given ``gpu_mem_mb``) whole GPUs
    and no memory, as before sharing existed. With one, a job that shares asks for no whole GPU
    and its estimate rounded up to whole slots; a job that needs GPUs to itself (``work`` None
    with ``whole`` GPUs, a compute-bound or unknown model, several processes, an estimate over
    the card) asks for its GPUs and all their memory, so that nothing shares them.
    """
    gpus = whole if work is None else work.processes
    if not capacity_mb:
        return gpus, 0
    if work is None or work.processes > 1 or compute_bound(work):
        return gpus, gpus * capacity_mb
    slots = share_slots(estimate_mb(work), capacity_mb)
    if slots >= SLOTS_PER_GPU:
        return 1, capacity_mb
    return 0, math.ceil(slots * capacity_mb / SLOTS_PER_GPU)


def share_slots(mem_mb: int, capacity_mb: int) -> int:
    """The lease's slots of a GPU of ``capacity_mb`` that ``mem_mb`` takes (at least one). A request
    that ``request`` rounded up to whole slots (by under 1 MB) takes exactly those slots."""
    return max(1, math.ceil((mem_mb - 1) * SLOTS_PER_GPU / capacity_mb))

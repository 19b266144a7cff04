"""Small GPU jobs share a GPU: the memory estimate, what each job asks Snakemake for, and how many run at once."""

import pytest
import torch

from hpa.runtime.gpu_memory import (
    ARCHS,
    SLOTS_PER_GPU,
    GpuWork,
    compute_bound,
    estimate_mb,
    request,
    share_slots,
)

GB = 1000  # MB
# The demo's jobs (config/config.yaml): 64 px, 4 channels, training at batch 32, predicting at 64.
DEMO_TRAIN = [GpuWork("resnet18", 64, 32), GpuWork("branchnet", 64, 32)]
DEMO_PREDICT = [GpuWork("resnet18", 64, 64, training=False), GpuWork("branchnet", 64, 64, training=False)]
# The real recipe's (config/hpa.yaml): 512 px.
RECIPE = [GpuWork("resnet34", 512, 32), GpuWork("densenet121", 512, 16),
          GpuWork("resnet34", 512, 32, training=False), GpuWork("densenet121", 512, 32, training=False)]


def side_by_side(asks: list[tuple[int, int]], gpus: int, total_mb: int) -> int:
    """How many of ``asks`` (gpu, gpu_mem_mb) Snakemake starts at once under --resources gpu=gpus
    gpu_mem_mb=total_mb, taking them in order while both sums stay within the limits (its check)."""
    used_gpus = used_mb = started = 0
    for gpu, mem in asks:
        if used_gpus + gpu <= gpus and used_mb + mem <= total_mb:
            used_gpus, used_mb, started = used_gpus + gpu, used_mb + mem, started + 1
    return started


@pytest.mark.parametrize("capacity_gb,per_gpu", [(40, 9), (80, 16), (140, 25)])
def test_demo_training_jobs_share_one_gpu_by_its_memory(capacity_gb, per_gpu):
    capacity = capacity_gb * GB
    for work in DEMO_TRAIN:
        gpu, mem = request(work, capacity)
        assert gpu == 0 and estimate_mb(work) <= mem < 1.1 * estimate_mb(work) + capacity / SLOTS_PER_GPU
        assert side_by_side([(gpu, mem)] * 100, gpus=1, total_mb=capacity) == per_gpu
        # The lease packs the same number into the GPU's slots.
        assert SLOTS_PER_GPU // share_slots(mem, capacity) == per_gpu


@pytest.mark.parametrize("capacity_gb,together", [(40, 7), (80, 8), (140, 8)])
def test_the_whole_demo_runs_side_by_side_on_one_gpu(capacity_gb, together):
    """Its four training jobs (2 models x 2 folds) all at once, its four predict jobs too, and on
    80 GB and more all eight together."""
    capacity = capacity_gb * GB
    trains = [request(work, capacity) for work in DEMO_TRAIN for _ in range(2)]
    predicts = [request(work, capacity) for work in DEMO_PREDICT for _ in range(2)]
    assert side_by_side(trains, 1, capacity) == 4 and side_by_side(predicts, 1, capacity) == 4
    assert side_by_side(trains + predicts, 1, capacity) == together


@pytest.mark.parametrize("capacity_gb", [40, 80, 140])
def test_the_real_recipe_takes_a_whole_gpu_per_job(capacity_gb):
    capacity = capacity_gb * GB
    for work in RECIPE:
        assert compute_bound(work), work
        assert request(work, capacity) == (1, capacity)
    # On an 8-GPU node: eight at a time, whatever mix of models and stages, and small jobs beside none of them.
    asks = [request(work, capacity) for work in RECIPE * 3]
    assert side_by_side(asks, gpus=8, total_mb=8 * capacity) == 8
    assert side_by_side(asks[:8] + [request(DEMO_TRAIN[0], capacity)], gpus=8, total_mb=8 * capacity) == 8


def test_an_8_gpu_node_runs_real_jobs_and_small_jobs_together():
    capacity = 80 * GB
    real, small = request(RECIPE[0], capacity), request(DEMO_TRAIN[0], capacity)
    # Six GPUs train the recipe; the other two's memory holds small jobs: Snakemake counts the two
    # GPUs' memory together (33 jobs), the lease packs 16 into each GPU's slots and the 33rd waits.
    assert side_by_side([real] * 6 + [small] * 100, gpus=8, total_mb=8 * capacity) == 6 + 33
    assert SLOTS_PER_GPU // share_slots(small[1], capacity) == 16


def test_without_a_capacity_every_job_asks_for_whole_gpus_as_before():
    for work in DEMO_TRAIN + RECIPE:
        assert request(work, None) == (1, 0)
    assert request(GpuWork("resnet34", 512, 32, processes=2), None) == (2, 0)
    assert request(None, None, whole=1) == (1, 0)


def test_what_the_table_does_not_describe_takes_whole_gpus():
    capacity = 80 * GB
    assert request(GpuWork("timm/convnext_tiny", 64, 32), capacity) == (1, capacity)
    assert request(GpuWork("resnet18", 64, 32, plain=False), capacity) == (1, capacity), "a gapnet head, a decoder"
    assert request(GpuWork("resnet18", 64, 32, processes=2), capacity) == (2, 2 * capacity), "DDP: a GPU a process"
    assert request(None, capacity, whole=1) == (1, capacity)
    # A small model at a size whose steps keep a GPU busy (~2 ms of an H200 each).
    assert compute_bound(GpuWork("resnet18", 512, 32)) and not compute_bound(GpuWork("resnet18", 128, 32))


def test_a_request_and_its_lease_agree_on_the_slots():
    for capacity in (24 * GB, 40 * GB, 80 * GB, 141 * GB):
        for work in DEMO_TRAIN + DEMO_PREDICT + [GpuWork("resnet50", 128, 32), GpuWork("vgg16", 64, 8)]:
            gpu, mem = request(work, capacity)
            assert gpu == 0
            slots = share_slots(estimate_mb(work), capacity)
            assert share_slots(mem, capacity) == slots and mem == -(-slots * capacity // SLOTS_PER_GPU)


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of ``model(x)`` (unique storages, the weights left out)."""
    weights = {p.data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        if t.data_ptr() not in weights:
            kept[t.data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(kept.values())


@pytest.mark.parametrize("arch", ["resnet18", "branchnet"])
def test_the_tables_activation_bytes_are_at_least_what_autograd_keeps(arch):
    """What the estimate assumes per pixel is what this repository's model keeps (or more), here re-measured."""
    from hpa.models.factory import build_model

    model = build_model(arch, num_classes=28, rgb_source=[None] * 4).train()
    small, large = (saved_bytes(model, torch.randn(2, 4, s, s)) for s in (32, 64))
    per_pixel = (large - small) / (2 * (64**2 - 32**2))
    assert 0.9 * ARCHS[arch]["saved"] <= per_pixel <= ARCHS[arch]["saved"]
    assert sum(p.numel() for p in model.parameters()) == ARCHS[arch]["params"]


def test_cudnn_autotunes_only_the_steps_that_keep_a_gpu_busy():
    from hpa.config.spec import TrainConfig
    from hpa.training.classifier import cudnn_autotune_pays

    assert not cudnn_autotune_pays(TrainConfig(arch="resnet18", batch_size=32), 64, 4), "the demo's: launch-bound"
    assert not cudnn_autotune_pays(TrainConfig(arch="branchnet", batch_size=32), 64, 4)
    assert cudnn_autotune_pays(TrainConfig(arch="resnet34", batch_size=32), 512, 4), "the recipe's: as before"
    assert cudnn_autotune_pays(TrainConfig(arch="densenet121", batch_size=16), 512, 4)
    assert cudnn_autotune_pays(TrainConfig(arch="resnet18", head="gapnet"), 64, 4), "unknown: as before"

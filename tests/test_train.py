import dataclasses
import functools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hpa.classes import HPA
from hpa.labels.sampling import class_weights, image_weights
from hpa.loop.augment import AugmentConfig, augment_batch, random_affine
from hpa.loop.optim import build_optimizer, build_schedule
from hpa.models import factory

# The atlas's four stains, as every model here is built for (the vocabulary passes them in the pipeline).
build_model = functools.partial(factory.build_model, rgb_source=HPA.rgb_source())
from hpa.config.spec import TrainConfig
from hpa.runtime.checkpoint import load_checkpoint
from hpa.runtime.distributed import Ranks
from hpa.runtime.loader import CachedImages, training_loader
from hpa.training.classifier import classifier_trainer, fit_fold

STATS = {"mean": [0.1] * 4, "std": [0.2] * 4}


def toy_problem(n=48, size=16, seed=0):
    """Images whose class 0 is a bright green square, class 1 a bright blue one."""
    rng = np.random.default_rng(seed)
    cache = rng.integers(0, 30, size=(n, 4, size, size), dtype=np.uint8)
    y = np.zeros((n, 28), dtype=np.uint8)
    y[: n // 2, 0] = 1
    y[n // 4 : 3 * n // 4, 1] = 1
    cache[y[:, 0] == 1, 1, 4:12, 4:12] = 200
    cache[y[:, 1] == 1, 2, 2:8, 2:8] = 200
    order = rng.permutation(n)
    return cache[order], y[order]


def run(tmp_path, cfg, name="model.pt"):
    cache, y = toy_problem()
    train, val = np.arange(32), np.arange(32, 48)
    return fit_fold(cfg, cache, train, y[train], val, y[val], STATS, vocabulary=HPA, checkpoint_path=tmp_path / name)


def test_training_learns_a_separable_toy_problem_and_is_reproducible(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=8, lr=3e-3, loss={"bce": 1.0, "soft_f1": 0.5})
    history, oof = run(tmp_path, cfg, "a.pt")
    assert oof.shape == (16, 28)
    # The two drawn classes are learnt: F1 1 at fitted thresholds, where an untrained model
    # gets ~2p/(1+p) = 0.67 by predicting every image (checked with lr 0 below).
    assert history[["f1_0", "f1_1"]].iloc[-1].min() > 0.9
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    again, oof2 = run(tmp_path, cfg, "b.pt")
    assert np.array_equal(oof, oof2), "same config, same seed: same model on CPU"
    ckpt = torch.load(tmp_path / "a.pt")
    assert set(ckpt) == {"model", "epoch", "config", "metrics"}, "no optimizer state in model.pt"
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())
    untrained, _ = run(tmp_path, dataclasses.replace(cfg, lr=0.0), "c.pt")
    assert untrained[["f1_0", "f1_1"]].iloc[-1].min() < 0.8
    assert ckpt["config"]["model"]["loss"] == {"bce": 1.0, "soft_f1": 0.5}
    assert not (tmp_path / "last.pt").exists(), "the resume file goes once the job is done"


def test_a_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=8, seed=5)
    full_history, full_oof = run(tmp_path / "full", cfg)

    import hpa.training.classifier as train_module

    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # killed during the third epoch, after two were saved
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", cfg)
    assert (tmp_path / "killed" / "last.pt").exists() and not (tmp_path / "killed" / "model.pt").exists()
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    history, oof = run(tmp_path / "killed", cfg)
    assert list(history["epoch"]) == [1, 2, 3]
    assert np.allclose(oof, full_oof, atol=1e-6)
    assert np.allclose(history["train_loss"], full_history["train_loss"], atol=1e-6)


def test_a_different_config_does_not_resume_a_stale_checkpoint(tmp_path, caplog):
    (tmp_path / "x").mkdir()
    torch.save({"identity": {"config": "other"}, "epoch": 2}, tmp_path / "x" / "last.pt")
    history, _ = run(tmp_path / "x", TrainConfig(epochs=1, batch_size=8))
    assert list(history["epoch"]) == [1]


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(FloatingPointError, match="lower lr"):
        run(tmp_path, TrainConfig(epochs=1, batch_size=8, lr=1e30, optimizer="sgd"))


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    history, _ = run(tmp_path, TrainConfig(epochs=8, batch_size=8, lr=0.0, patience=1, keep="best", schedule="constant"))
    f1 = history["val_macro_f1_fitted"].to_numpy()
    best = int(np.argmax(f1)) + 1  # first epoch reaching the maximum
    assert len(history) == min(8, best + 1)
    assert len(history) < 8, "lr 0 cannot keep improving for 8 epochs"


def test_frozen_body_does_not_change():
    model = build_model("resnet18", STATS["mean"], STATS["std"], num_classes=28)
    before = [p.detach().clone() for p in model.body_parameters()]
    opt = build_optimizer(model, "adam", 1e-2, 0.0)
    for p in model.body_parameters():
        p.requires_grad_(False)
    model(torch.randint(0, 255, (4, 4, 32, 32), dtype=torch.uint8)).sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.body_parameters()))
    assert len(opt.param_groups) == 2


def test_differential_learning_rates():
    model = build_model("resnet18", num_classes=28)
    opt = build_optimizer(model, "adamw", 1e-3, 0.01, body_lr_mult=0.1)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"body": 1e-4, "head": 1e-3})
    head = {id(p) for p in model.head_parameters()}
    assert head == {id(p) for p in model.backbone.fc.parameters()}


@pytest.mark.parametrize("name", ["constant", "cosine", "onecycle", "step"])
def test_schedules(name):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = build_schedule(opt, name, epochs=20, steps_per_epoch=5, warmup_epochs=2, step_epochs=5, gamma=0.5)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if name == "constant":
        assert lrs[0] == pytest.approx(0.1) and lrs[50] == 1.0  # warmup, then flat
    elif name == "cosine":
        assert lrs[9] == pytest.approx(1.0) and lrs[-1] < 0.01 and lrs == lrs[:10] + sorted(lrs[10:], reverse=True)
    elif name == "onecycle":
        assert max(lrs) == pytest.approx(1.0, abs=0.05) and lrs[0] < 0.1 and lrs[-1] < 0.01
    else:
        assert lrs[30] == pytest.approx(0.5) and lrs[60] == pytest.approx(0.25)


def epoch_batches(data, cfg, epoch, weights):
    loader = training_loader(data, cfg.batch_size, Ranks(), weights=image_weights(data.targets.numpy(), weights),
                             seed_of=lambda e: e)
    loader.batch_sampler.set_epoch(epoch)
    return list(loader.batch_sampler)


def test_oversampling_draws_rare_classes_at_the_expected_rate():
    y = np.zeros((2000, 28), dtype=np.uint8)
    y[:, 0] = 1
    y[:20, 27] = 1  # 1% rare class
    weights = class_weights(y.sum(0), power=1.0, cap=20.0)
    assert weights[27] == pytest.approx(20.0)  # 2000/20 = 100, capped at 20
    expected = 20 * 20 / (20 * 20 + 1980)  # 20 rare images drawn at weight 20, 1980 others at 1
    cfg = TrainConfig(oversample=True, batch_size=100)
    data = CachedImages(np.zeros((2000, 4, 2, 2), np.uint8), np.arange(2000), y)
    draws = np.concatenate([
        batch for seed in range(10)
        for batch in epoch_batches(data, cfg, seed, weights)
    ])
    assert len(draws) == 10 * 2000
    observed = y[draws, 27].mean()
    assert observed == pytest.approx(expected, rel=0.1)
    assert observed > 10 * y[:, 27].mean()


def test_augmentations_keep_content_and_vary():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(8, 4, 32, 32, dtype=torch.uint8)
    x[:, :, 12:20, 12:20] = 200
    cfg = AugmentConfig(dihedral=True, rotate=30, zoom=(0.9, 1.2), brightness=0.2, contrast=0.2)
    out = augment_batch(x, cfg, g)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 255
    assert not torch.allclose(out[0], out[1])
    # The central square survives rotation and zoom (it stays the brightest region).
    assert (out[:, :, 14:18, 14:18].mean() > 4 * out[:, :, :4, :4].mean())
    identity = random_affine(x.float(), 0.0, (1.0, 1.0), g)
    assert torch.allclose(identity, x.float(), atol=1e-3)


def test_config_defaults_round_trip():
    cfg = TrainConfig.from_dict({"augment": {"rotate": 10}})
    assert cfg.augment["rotate"] == 10 and cfg.augment["dihedral"] is True
    with pytest.raises(ValueError, match="models.m.epochz: unknown key"):
        TrainConfig.from_dict({"epochz": 3}, where="models.m")
    assert dataclasses.asdict(TrainConfig())["amp"] is None


def test_a_checkpoint_resumes_under_another_compile_but_not_another_lr():
    assert TrainConfig(compile=True).learning_keys() == TrainConfig().learning_keys()
    assert TrainConfig(lr=0.01).learning_keys() != TrainConfig().learning_keys()


def test_stages_switch_the_loss_and_scale_the_learning_rate(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, schedule="constant",
                      stages=[{"loss": "weighted_bce", "epochs": 2}, {"loss": "soft_f1", "lr_mult": 0.1}])
    history, _ = run(tmp_path, cfg)
    assert list(history["stage"]) == [0, 0, 1]
    assert history["lr"].tolist() == pytest.approx([1e-3, 1e-3, 1e-4])
    # soft-F1 is 1 - F1, far above the weighted BCE of a model that has learnt the toy problem.
    assert history["train_loss"].iloc[2] > 3 * history["train_loss"].iloc[1]


def test_stages_longer_than_the_training_are_refused():
    with pytest.raises(ValueError, match="raise epochs"):
        TrainConfig.from_dict({"epochs": 3, "stages": [{"loss": "bce", "epochs": 3}, {"loss": "soft_f1"}]})
    with pytest.raises(ValueError, match="stages\\[0\\]"):
        TrainConfig.from_dict({"stages": [{"los": "bce"}]})


def test_dual_loss_adds_the_weighted_reconstruction_error():
    cache, y = toy_problem()
    x, target = torch.from_numpy(cache[:8]).float(), torch.as_tensor(y[:8], dtype=torch.float32)
    cfg = TrainConfig(reconstruction_weight=10.0)
    trainer = classifier_trainer(cfg, STATS, y, 4, vocabulary=HPA)
    trainer.model.train()
    torch.manual_seed(0)
    loss, _ = trainer.task.loss(trainer, x, target)
    torch.manual_seed(0)
    logits, reconstruction = trainer.model(x, reconstruct=True)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + 10.0 * torch.mean(
        (reconstruction - trainer.model.normalize(x)) ** 2
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    decoder_grads = [p.grad for n, p in trainer.model.named_parameters() if "decoder" in n]
    assert decoder_grads and all(g is not None and g.abs().sum() > 0 for g in decoder_grads)
    plain = classifier_trainer(TrainConfig(), STATS, y, 4, vocabulary=HPA).model
    assert not any("decoder" in n for n, _ in plain.named_parameters())


def test_a_gapnet_dual_loss_checkpoint_predicts_without_its_training_config(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, head="gapnet", reconstruction_weight=10.0, loss="hard_bce")
    _, oof = run(tmp_path, cfg)
    model, ckpt = load_checkpoint(tmp_path / "model.pt", torch.device("cpu"))
    cache, _ = toy_problem()
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.from_numpy(cache[32:48]))).numpy()
    assert np.allclose(probs, oof, atol=1e-5)


def test_keep_last_keeps_the_last_epoch_and_best_the_best(tmp_path):
    """keep: last ignores validation F1 (nothing is selected on the OOF images); best follows it."""
    (tmp_path / "last").mkdir(), (tmp_path / "best").mkdir()
    last = TrainConfig(epochs=3, batch_size=8, lr=3e-3, keep="last")
    run(tmp_path / "last", last)
    saved = torch.load(tmp_path / "last" / "model.pt")
    assert saved["epoch"] == 3
    best = TrainConfig(epochs=3, batch_size=8, lr=3e-3, keep="best")
    history, _ = run(tmp_path / "best", best)
    saved = torch.load(tmp_path / "best" / "model.pt")
    assert saved["epoch"] == int(np.argmax(history["val_macro_f1_fitted"].to_numpy())) + 1


def test_patience_without_keep_best_is_refused():
    with pytest.raises(ValueError, match="keep: best"):
        TrainConfig.from_dict({"patience": 2})
    with pytest.raises(ValueError, match="keep"):
        TrainConfig.from_dict({"keep": "first"})


def test_validate_every_skips_epochs_but_always_scores_the_kept_last_one(tmp_path):
    history, oof = run(tmp_path, TrainConfig(epochs=3, batch_size=8, lr=3e-3, validate_every=2))
    assert history["val_loss"].notna().tolist() == [False, True, True]
    assert oof.shape == (16, 28)
    with pytest.raises(ValueError, match="keep: best"):
        TrainConfig.from_dict({"validate_every": 2, "keep": "best"})


def test_model_pt_opens_with_a_plain_torch_load_in_a_fresh_process(tmp_path):
    run(tmp_path, TrainConfig(epochs=1, batch_size=8))
    code = ("import sys, torch; c = torch.load(sys.argv[1], map_location='cpu'); "
            "print(sorted(c), c['epoch'], c['config']['model']['arch'])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.pt")], capture_output=True,
                         text=True, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}).stdout
    assert out.split("\n")[0] == "['config', 'epoch', 'metrics', 'model'] 1 resnet18"


import numpy as np
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from hpa.metrics import macro_f1
from hpa.models.losses import (
    FocalLoss,
    HardBCE,
    LovaszHinge,
    SoftF1Loss,
    WeightedSum,
    build_loss,
    lovasz_hinge_flat,
    pos_weights,
)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 28, generator=g) * 2
    targets = (torch.rand(16, 28, generator=g) < 0.2).float()
    return logits, targets


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (1.0, 0.75), (0.0, 0.5)])
def test_focal_matches_torchvision(batch, gamma, alpha):
    logits, targets = batch
    ours = FocalLoss(gamma, alpha)(logits, targets)
    reference = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="mean")
    assert torch.allclose(ours, reference, atol=1e-6)


def test_focal_without_alpha_and_gamma_zero_is_bce(batch):
    logits, targets = batch
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert torch.allclose(FocalLoss(0.0, None)(logits, targets), bce, atol=1e-6)


def test_soft_f1_on_hard_predictions_is_one_minus_macro_f1(batch):
    _, targets = batch
    pred = torch.zeros_like(targets)
    pred[:, ::3] = 1
    logits = (pred * 2 - 1) * 50  # sigmoid saturates to exactly 0/1
    # Classes neither present nor predicted count as F1 0, in sklearn and in the loss alike.
    expected = 1 - macro_f1(targets.numpy(), pred.numpy())
    assert SoftF1Loss()(logits, targets).item() == pytest.approx(expected, abs=1e-5)


def jaccard_loss(labels, mispredicted):
    """Jaccard loss of the foreground when exactly ``mispredicted`` are wrong."""
    pred = labels.copy()
    pred[list(mispredicted)] = 1 - pred[list(mispredicted)]
    inter = np.sum((pred == 1) & (labels == 1))
    union = np.sum((pred == 1) | (labels == 1))
    return 1 - inter / union if union else 0.0


def lovasz_by_definition(logits, labels):
    """The Lovász extension of the Jaccard loss at the hinge errors, from its definition."""
    errors = np.maximum(1 - logits * (2 * labels - 1), 0)
    order = np.argsort(-errors, kind="stable")
    total, previous = 0.0, 0.0
    for i in range(len(order)):
        current = jaccard_loss(labels, order[: i + 1])
        total += errors[order[i]] * (current - previous)
        previous = current
    return total


def test_lovasz_hinge_is_the_lovasz_extension_of_jaccard():
    rng = np.random.default_rng(3)
    for _ in range(10):
        labels = (rng.random(9) < 0.4).astype(float)
        labels[0] = 1
        logits = rng.normal(size=9) * 2
        ours = lovasz_hinge_flat(torch.tensor(logits), torch.tensor(labels)).item()
        assert ours == pytest.approx(lovasz_by_definition(logits, labels), abs=1e-9)


def test_lovasz_is_zero_only_with_margin(batch):
    _, targets = batch
    confident = (targets * 2 - 1) * 3.0  # every logit past the margin of 1
    assert LovaszHinge()(confident, targets).item() == pytest.approx(0.0)
    assert LovaszHinge()(-confident, targets).item() > 1.0


def test_pos_weights_favour_rare_classes():
    y = np.zeros((100, 3))
    y[:50, 0] = 1
    y[:4, 1] = 1
    w = pos_weights(y, power=1.0)
    assert w.tolist() == pytest.approx([1.0, 24.0, 1.0])  # absent class: neutral weight
    assert pos_weights(y, power=0.5)[1].item() == pytest.approx(24**0.5)


def test_build_loss_from_config(batch):
    logits, targets = batch
    combo = build_loss({"focal": 1.0, "lovasz": 0.5}, {"focal_gamma": 2.0})
    assert isinstance(combo, WeightedSum)
    expected = FocalLoss(2.0)(logits, targets) + 0.5 * LovaszHinge()(logits, targets)
    assert torch.allclose(combo(logits, targets), expected)
    weighted = build_loss("weighted_bce", y_train=targets.numpy())
    assert weighted(logits, targets).item() > 0
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss({"focal": 1.0, "dice": 1.0})


def test_hard_bce_is_the_mean_of_the_largest_terms(batch):
    logits, targets = batch
    logits = logits.clone().requires_grad_(True)
    loss = build_loss("hard_bce", {"hard_fraction": 0.25})(logits, targets)
    terms = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").flatten()
    hardest = torch.topk(terms.detach(), 16 * 28 // 4)
    assert loss.item() == pytest.approx(hardest.values.mean().item(), abs=1e-6)
    loss.backward()
    kept = torch.zeros(terms.numel(), dtype=torch.bool)
    kept[hardest.indices] = True
    grad = logits.grad.flatten()
    assert (grad[~kept] == 0).all() and (grad[kept] != 0).all()


def test_hard_bce_of_every_term_is_bce_and_keeps_at_least_one(batch):
    logits, targets = batch
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    assert torch.allclose(HardBCE(1.0)(logits, targets), bce.mean(), atol=1e-6)
    assert torch.equal(HardBCE(1e-6)(logits, targets), bce.max())
    assert build_loss("hard_bce").fraction == 0.1
    with pytest.raises(ValueError, match="hard_fraction"):
        HardBCE(0.0)


@pytest.mark.parametrize("name", ["bce", "weighted_bce", "focal", "soft_f1", "lovasz", "hard_bce"])
def test_every_loss_decreases_under_gradient_descent(batch, name):
    _, targets = batch
    logits = torch.zeros_like(targets, requires_grad=True)
    loss_fn = build_loss(name, y_train=targets.numpy())
    start = loss_fn(logits, targets).item()
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        loss_fn(logits, targets).backward()
        opt.step()
    assert loss_fn(logits, targets).item() < 0.5 * start


def lovasz_per_class_loop(logits, targets):
    """The loss as it was computed before it was vectorised: a Python loop over the classes (reference)."""
    def grad(gt_sorted):
        gts = gt_sorted.sum()
        jaccard = 1.0 - (gts - gt_sorted.cumsum(0)) / (gts + (1 - gt_sorted).cumsum(0))
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
        return jaccard

    def flat(x, labels):
        errors_sorted, perm = torch.sort(1.0 - x * (2.0 * labels - 1.0), descending=True)
        return torch.dot(torch.relu(errors_sorted), grad(labels[perm]))

    return torch.stack([flat(logits[:, k], targets[:, k]) for k in range(logits.shape[1])]).mean()


@pytest.mark.parametrize("case", ["random", "ties", "no_positive"])
def test_vectorised_lovasz_equals_the_per_class_loop(batch, case):
    logits, targets = batch
    if case == "ties":  # logits on a coarse grid: many equal errors within a class
        logits = (logits * 2).round() / 2
    if case == "no_positive":
        targets = targets.clone()
        targets[:, 3] = 0
        targets[:, 7] = 1
    values, grads = [], []
    for fn in (LovaszHinge(), lovasz_per_class_loop):
        x = logits.clone().double().requires_grad_()
        value = fn(x, targets.double())
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    assert torch.allclose(values[0], values[1], atol=1e-12)
    assert torch.allclose(grads[0], grads[1], atol=1e-12)

import functools

import numpy as np
import pytest
import torch

from hpa.classes import HPA
from hpa.models import factory
from hpa.models.backbones import ARCHITECTURES, channel_stem

# The atlas's four stains, as every model here is built for (the vocabulary passes them in the pipeline).
build_model = functools.partial(factory.build_model, rgb_source=HPA.rgb_source())
from torchvision import models as tvm

from hpa.dihedral import dihedral, random_dihedral, transforms_for
from hpa.inference.tta import predict_probs


# VGG16 (138M parameters) is built once, in test_architectures.
@pytest.mark.parametrize("arch", sorted(set(ARCHITECTURES) - {"vgg16"}))
def test_every_arch_takes_four_channels_and_gives_28_logits(arch):
    torch.manual_seed(0)
    model = build_model(arch, dropout=0.2, num_classes=28).eval()
    x = torch.randint(0, 256, (2, 4, 64, 64), dtype=torch.uint8)
    assert model(x).shape == (2, 28)


@pytest.mark.parametrize("init,expected", [
    ("mean_rg", lambda w: w[:, :2].mean(1)),
    ("copy_r", lambda w: w[:, 0]),
    ("zeros", lambda w: torch.zeros_like(w[:, 0])),
])
def test_fourth_filter_initialised_from_the_rgb_filters(init, expected):
    torch.manual_seed(0)
    rgb = tvm.resnet18(weights=None)
    original = rgb.conv1.weight.detach().clone()
    stem = channel_stem(rgb, HPA.rgb_source(), init).conv1.weight
    assert stem.shape[1] == 4
    assert torch.equal(stem[:, :3], original)
    assert torch.allclose(stem[:, 3], expected(original))


def test_adapter_starts_as_the_unchanged_rgb_backbone():
    torch.manual_seed(0)
    model = build_model("resnet18", stem="adapter", num_classes=28).eval()
    torch.manual_seed(0)
    rgb = tvm.resnet18(weights=None)
    rgb.fc = model.backbone.fc  # same head, to compare outputs
    rgb.eval()
    x = torch.randint(0, 256, (2, 4, 32, 32), dtype=torch.uint8)
    assert torch.allclose(model(x), rgb(x[:, :3].float() / 255), atol=1e-5)


def test_local_weights_file_is_loaded(tmp_path):
    torch.manual_seed(1)
    source = tvm.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", weights=str(tmp_path / "r18.pth"), num_classes=28)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model("resnet18", weights=str(tmp_path / "missing.pth"), num_classes=28)


def test_unreachable_imagenet_weights_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="weights: <path of that file>"):
        build_model("resnet18", pretrained="imagenet", num_classes=28)


def test_normalisation_is_part_of_the_model():
    model = build_model("resnet18", mean=[0.1, 0.2, 0.3, 0.4], std=[0.5] * 4, num_classes=28)
    x = torch.full((1, 4, 2, 2), 51, dtype=torch.uint8)  # 0.2 on the 0..1 scale
    out = model.normalize(x)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.2, 0.0, -0.2, -0.4]), atol=1e-6)


def test_dihedral_group_has_eight_distinct_elements():
    x = torch.arange(9).view(1, 1, 3, 3)
    views = {tuple(dihedral(x, t).flatten().tolist()) for t in range(8)}
    # Exactly the square's symmetries: four rotations, each with and without a flip.
    square = {tuple(torch.rot90(v, k, dims=(-2, -1)).flatten().tolist())
              for v in (x, torch.flip(x, dims=(-1,))) for k in range(4)}
    assert len(views) == 8 and views == square
    assert torch.equal(dihedral(x, 0), x)
    assert torch.equal(dihedral(x, 4), torch.flip(x, dims=(-1,)))
    assert torch.equal(dihedral(x, 6), torch.flip(x, dims=(-2,)))
    assert set(transforms_for("flips")) == {0, 2, 4, 6}


def test_random_dihedral_only_permutes_pixels():
    """Each image comes out as one of its own eight views (not any shuffle of its pixels), the
    views drawn per image, so a batch holds several."""
    x = torch.randint(0, 256, (16, 4, 5, 5), dtype=torch.uint8)
    out = random_dihedral(x, torch.Generator().manual_seed(0))
    assert not torch.equal(out, x)
    drawn = []
    for image, result in zip(x, out):
        matches = [t for t in range(8) if torch.equal(dihedral(image[None], t)[0], result)]
        assert matches, "an image came out as none of its dihedral views"
        drawn.append(matches[0])
    assert len(set(drawn)) > 2


def test_tta_averages_or_maxes_the_model_over_exactly_the_named_views():
    """An orientation-sensitive model: TTA must equal the hand-made mean/max over its views,
    and differ from the plain prediction (so a TTA that is never applied fails here)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 28))
    batches = [torch.rand(3, 4, 8, 8), torch.rand(2, 4, 8, 8)]
    x = torch.cat(batches)
    cpu = torch.device("cpu")
    with torch.no_grad():
        views = {t: torch.sigmoid(model(dihedral(x, t))).numpy() for t in range(8)}
    plain = predict_probs(model, batches, cpu, tta="none", n_classes=28)
    assert plain.shape == (5, 28) and np.allclose(plain, views[0], atol=1e-6)
    flips = predict_probs(model, batches, cpu, tta="flips", n_classes=28)
    assert np.allclose(flips, np.mean([views[t] for t in transforms_for("flips")], 0), atol=1e-6)
    most = predict_probs(model, batches, cpu, tta="dihedral", aggregate="max", n_classes=28)
    assert np.allclose(most, np.max([views[t] for t in range(8)], 0), atol=1e-6)
    assert not np.allclose(flips, plain, atol=1e-3) and not np.allclose(most, flips, atol=1e-3)


def test_tta_of_an_invariant_model_equals_plain_prediction():
    # Global average pooling makes this model exactly dihedral-invariant.
    model = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 28)
    )
    batches = [torch.rand(3, 4, 8, 8), torch.rand(2, 4, 8, 8)]
    plain = predict_probs(model, batches, torch.device("cpu"), tta="none", n_classes=28)
    flips = predict_probs(model, batches, torch.device("cpu"), tta="dihedral", aggregate="max", n_classes=28)
    assert plain.shape == (5, 28)
    assert np.allclose(plain, flips, atol=1e-6)


def test_per_image_normalisation_removes_gain_and_offset():
    """normalize: image standardises each image's channels: a dimmer copy of an image (gain
    0.5, the same pattern) reaches the backbone as the same input; dataset does not."""
    torch.manual_seed(0)
    x = torch.randint(0, 200, (2, 4, 16, 16)).float()
    dim = (x * 0.5 + 10).round()
    image = build_model("resnet18", normalize="image", num_classes=28).normalize
    assert torch.allclose(image(x), image(dim), atol=0.05)
    dataset = build_model("resnet18", [0.1] * 4, [0.2] * 4, normalize="dataset", num_classes=28).normalize
    assert not torch.allclose(dataset(x), dataset(dim), atol=0.05)
    blank = image(torch.full((1, 4, 8, 8), 7.0))
    assert torch.equal(blank, torch.zeros_like(blank))
    with pytest.raises(ValueError, match="normalize"):
        build_model("resnet18", normalize="percentile", num_classes=28)


@pytest.mark.parametrize("max_stacked", [256, 6])
def test_tta_stacks_the_views_into_few_forwards_with_the_same_probabilities(monkeypatch, max_stacked):
    """A batch's 8 views go through the model stacked: one forward (or as many as MAX_STACKED allows),
    with each view's probabilities those of its own forward (a BatchNorm in eval mode: per image)."""
    from hpa.inference import tta
    monkeypatch.setattr(tta, "MAX_STACKED", max_stacked)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 6 * 6, 28)).eval()
    model[1].running_mean.uniform_()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    batches = [torch.rand(3, 4, 8, 8), torch.rand(2, 4, 8, 8)]
    with torch.no_grad():
        views = {t: torch.sigmoid(model(dihedral(torch.cat(batches), t))).numpy() for t in range(8)}
    calls.clear()
    probs = predict_probs(model, batches, torch.device("cpu"), tta="dihedral", n_classes=28)
    assert np.allclose(probs, np.mean([views[t] for t in range(8)], 0), atol=1e-6)
    per_forward = [max_stacked // 3 * 3, max_stacked // 2 * 2] if max_stacked < 24 else [24, 16]
    assert calls[0] == min(24, per_forward[0]) and sum(calls) == 8 * 5
    assert len(calls) == (2 if max_stacked == 256 else 4 + 3)

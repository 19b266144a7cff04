"""The write-ups' architecture options: GAPNet head, reconstruction decoder, BranchNet, extra ResNet blocks."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock
from torchvision.ops import SqueezeExcitation

from hpa.classes import HPA
from hpa.models import factory

# The atlas's four stains, as every model here is built for (the vocabulary passes them in the pipeline).
build_model = functools.partial(factory.build_model, rgb_source=HPA.rgb_source())


def images(n=2, height=32, width=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 4, height, width or height), dtype=torch.uint8, generator=g)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch,stages", [
    ("resnet18", [64, 128, 256, 512]),
    ("densenet121", [256, 512, 1024, 1024]),
    ("efficientnet_b0", [24, 40, 112, 1280]),
    ("branchnet", [64, 128, 256, 512]),
])
def test_gapnet_pools_every_stage_through_squeeze_excitation(arch, stages):
    torch.manual_seed(0)
    model = build_model(arch, head="gapnet", se_reduction=8, dropout=0.3, num_classes=28).eval()
    x = images()
    with torch.no_grad():
        assert model(x).shape == (2, 28)
        pooled = model.gap_head.pooled(model.backbone(model.normalize(x)))
    assert pooled.shape == (2, sum(stages))
    assert model.gap_head.classifier[1].in_features == sum(stages)
    se = [m for m in model.gap_head.modules() if isinstance(m, SqueezeExcitation)]
    assert [(b.fc1.in_channels, b.fc1.out_channels) for b in se] == [(c, c // 8) for c in stages]


def test_gapnet_feeds_layer1_straight_to_the_head():
    torch.manual_seed(0)
    model = build_model("resnet18", head="gapnet", num_classes=28)
    features = model.backbone(model.normalize(images()))
    # Cut the path through the deeper layers: only the head's own tap can reach layer1.
    shortcut_only = {node: f if node == "layer1" else f.detach() for node, f in features.items()}
    model.gap_head(shortcut_only).sum().backward()
    layer1 = model.backbone.get_submodule("layer1.0.conv1").weight.grad
    assert layer1 is not None and layer1.abs().sum() > 0
    assert model.backbone.get_submodule("layer4.0.conv1").weight.grad is None


@pytest.mark.parametrize("arch,head,stem", [
    ("resnet18", "linear", "mean_rg"),
    ("resnet18", "gapnet", "adapter"),
    ("efficientnet_b0", "linear", "adapter"),
    ("densenet121", "gapnet", "zeros"),
    ("branchnet", "gapnet", "mean_rg"),
])
def test_reconstruction_has_the_input_shape(arch, head, stem):
    torch.manual_seed(0)
    model = build_model(arch, head=head, stem=stem, decoder=True, num_classes=28).eval()
    with torch.no_grad():
        for height, width in [(32, 32), (48, 48), (64, 40)]:
            logits, recon = model(images(height=height, width=width), reconstruct=True)
            assert logits.shape == (2, 28)
            assert recon.shape == (2, 4, height, width)
        x = images()
        assert torch.equal(model(x), model(x, reconstruct=True)[0])


def test_reconstruct_without_a_decoder_is_an_error():
    with pytest.raises(ValueError, match="decoder=True"):
        build_model("resnet18", num_classes=28)(images(), reconstruct=True)


def test_decoder_learns_to_reconstruct_a_fixed_batch():
    torch.manual_seed(0)
    model = build_model("resnet18", mean=(0.3,) * 4, std=(0.2,) * 4, decoder=True, head="gapnet", num_classes=28)
    # Smooth images: what a 1x1 bottleneck at 32 px can in principle rebuild.
    coarse = torch.rand(4, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    x = (F.interpolate(coarse, size=32, mode="bilinear") * 255).to(torch.uint8)
    target = model.normalize(x)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x, reconstruct=True)[1], target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_branchnet_branches_see_only_their_own_channel():
    torch.manual_seed(0)
    model = build_model("branchnet", mean=(0.1, 0.05, 0.05, 0.1), std=(0.15,) * 4, num_classes=28)
    x = images(n=3)
    perturbed = x.clone()
    perturbed[:, 3] = 255 - perturbed[:, 3]  # yellow only
    # Training mode: BatchNorm's batch statistics must not mix the channels either.
    before = model.backbone.branches(model.normalize(x))
    after = model.backbone.branches(model.normalize(perturbed))
    per_branch = before.shape[1] // 4
    assert torch.equal(before[:, : 3 * per_branch], after[:, : 3 * per_branch])
    assert not torch.allclose(before[:, 3 * per_branch:], after[:, 3 * per_branch:])


def test_branchnet_has_no_pretrained_weights_and_no_adapter(tmp_path):
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("branchnet", pretrained="imagenet", num_classes=28)
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model("branchnet", weights=str(tmp_path / "branchnet.pth"), num_classes=28)
    with pytest.raises(ValueError, match="stem 'adapter' does not apply"):
        build_model("branchnet", stem="adapter", num_classes=28)
    # The 4-channel stem inits have nothing to initialise: the same network either way.
    torch.manual_seed(0)
    zeros = build_model("branchnet", stem="zeros", num_classes=28)
    torch.manual_seed(0)
    default = build_model("branchnet", num_classes=28)
    assert all(torch.equal(a, b) for a, b in zip(zeros.state_dict().values(), default.state_dict().values()))


@pytest.mark.parametrize("arch", ["vgg16", "resnet152"])
def test_large_archs_take_four_channels_through_the_adapter(arch):
    model = build_model(arch, stem="adapter", num_classes=28).eval()
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 3
    with torch.no_grad():
        assert model(images()).shape == (2, 28)


def prepool_shape(model, size):
    seen = {}
    model.backbone.avgpool.register_forward_pre_hook(lambda module, args: seen.update(shape=args[0].shape))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 4, size, size, dtype=torch.uint8))
    return tuple(seen["shape"])


def test_extra_blocks_reduce_the_map_before_pooling():
    plain = build_model("resnet18", num_classes=28)
    extra = build_model("resnet18", extra_blocks=2, num_classes=28)
    assert prepool_shape(plain, 512) == (1, 512, 16, 16)
    assert prepool_shape(extra, 512) == (1, 512, 4, 4)
    assert all(isinstance(b, BasicBlock) for b in extra.backbone.layer4)
    assert n_params(extra) > n_params(plain)
    with pytest.raises(ValueError, match="ResNets only"):
        build_model("densenet121", extra_blocks=1, num_classes=28)


def test_head_parameters_are_every_new_module():
    model = build_model("resnet18", head="gapnet", decoder=True, extra_blocks=1, num_classes=28)
    for p in model.body_parameters():
        p.requires_grad_(False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    new = ("gap_head.", "decoder.", "backbone.layer4.2.")
    assert trainable == {name for name, _ in model.named_parameters() if name.startswith(new)}
    assert {name.split(".")[0] for name in trainable} == {"gap_head", "decoder", "backbone"}
    assert any(".se." in name for name in trainable)


def test_linear_head_keeps_the_old_state_dict_keys():
    old = {k.replace("fc.", "fc.1.") for k in tvm.resnet18(weights=None).state_dict()}
    old = {"normalize.mean", "normalize.std"} | {f"backbone.{k}" for k in old}
    linear = build_model("resnet18", num_classes=28)
    assert set(linear.state_dict()) == old
    # A decoder model has the same keys plus its decoder's, and gives the same logits.
    decoded = build_model("resnet18", decoder=True, num_classes=28)
    assert {k for k in decoded.state_dict() if not k.startswith("decoder.")} == old
    decoded.load_state_dict(linear.state_dict(), strict=False)
    x = images()
    with torch.no_grad():
        assert torch.equal(linear.eval()(x), decoded.eval()(x))

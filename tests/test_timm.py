"""timm backbones (``arch: timm/<name>``): four channels, the heads, refusals, weights, DDP."""

import functools

import pytest
import timm
import torch
from timm.models import _builder

from hpa.classes import HPA, NUM_CLASSES
from hpa.models import factory

# The atlas's four stains, as every model here is built for (the vocabulary passes them in the pipeline).
build_model = functools.partial(factory.build_model, rgb_source=HPA.rgb_source())

from test_distributed import run, write_job

TINY = "timm/resnet10t"  # 4.9M parameters: a forward pass at 64 px takes milliseconds on a CPU


@pytest.fixture
def x():
    return torch.randint(0, 256, (2, 4, 64, 64), dtype=torch.uint8)


@pytest.mark.parametrize("arch", [TINY, "timm/mobilenetv3_small_050"])
def test_a_timm_model_takes_four_channels_and_gives_28_logits(arch, x):
    model = build_model(arch, num_classes=28).eval()
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.in_channels == 4
    assert model(x).shape == (2, NUM_CLASSES)
    head = {id(p) for p in model.head_parameters()}
    classifier = model.backbone.get_classifier()
    assert head == {id(p) for p in classifier.parameters()}  # the new linear layer, nothing pretrained
    assert not head & {id(p) for p in model.body_parameters()}


def test_gapnet_taps_the_timm_stages_at_strides_4_to_32(x):
    model = build_model(TINY, head="gapnet", num_classes=28).eval()
    assert model.backbone.nodes == ["layer1", "layer2", "layer3", "layer4"]
    maps = model.backbone(model.normalize(x))
    assert [m.shape[-1] for m in maps.values()] == [16, 8, 4, 2]
    assert model.gap_head.classifier[1].in_features == 64 + 128 + 256 + 512
    assert model(x).shape == (2, NUM_CLASSES) and model.head_modules == ("gap_head",)


@pytest.mark.parametrize("head", ["linear", "gapnet"])
def test_the_decoder_rebuilds_the_input_from_a_timm_model(head, x):
    model = build_model(TINY, head=head, decoder=True, num_classes=28)
    logits, recon = model(x, reconstruct=True)
    assert logits.shape == (2, NUM_CLASSES) and recon.shape == (2, 4, 64, 64)
    assert "decoder" in model.head_modules


def test_what_a_timm_model_cannot_do_is_refused_by_name():
    with pytest.raises(ValueError, match="extra_blocks=1 applies to torchvision resnet archs only, not timm/resnet10t"):
        build_model(TINY, extra_blocks=1, num_classes=28)
    with pytest.raises(ValueError, match="decoder needs a 2-D feature map, but timm/vit_tiny_patch16_224"):
        build_model("timm/vit_tiny_patch16_224", decoder=True, num_classes=28)
    with pytest.raises(ValueError, match="timm has no model 'resnet10x'; close names: timm/resnet10"):
        build_model("timm/resnet10x", num_classes=28)


def test_the_adapter_feeds_an_unchanged_three_channel_timm_model(x):
    model = build_model(TINY, stem="adapter", num_classes=28).eval()
    assert model.adapter.in_channels == 4 and model.backbone.conv1[0].in_channels == 3
    assert model(x).shape == (2, NUM_CLASSES)


def test_unreachable_timm_weights_say_where_to_put_them(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as err:
        build_model(TINY, pretrained="imagenet", num_classes=28)
    message = str(err.value)
    assert "could not load ImageNet weights for timm/resnet10t (OSError: network unreachable)" in message
    assert "https://huggingface.co/timm/resnet10t.c3_in1k/resolve/main/model.safetensors" in message
    assert "weights: <path of that file>" in message and "$HF_HOME/hub" in message


def test_local_timm_weights_load_with_timm_stem_adaptation(tmp_path):
    reference = timm.create_model("resnet10t", pretrained=False)  # 3 channels, 1000 classes
    torch.save(reference.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model(TINY, weights=str(tmp_path / "resnet10t.pth"), num_classes=28)
    rgb = reference.conv1[0].weight
    stem = model.backbone.conv1[0].weight
    # timm's in_chans=4: the filters repeated R, G, B, R and scaled by 3/4.
    torch.testing.assert_close(stem, torch.cat([rgb, rgb[:, :1]], dim=1) * 3 / 4)
    torch.testing.assert_close(model.backbone.layer4[0].conv1.weight, reference.layer4[0].conv1.weight)
    assert model.backbone.fc.out_features == NUM_CLASSES
    with pytest.raises(FileNotFoundError, match="weights: .*nope.pth does not exist"):
        build_model(TINY, weights=str(tmp_path / "nope.pth"), num_classes=28)


def test_the_embedding_width_replaces_the_timm_classes(x):
    assert build_model(TINY, num_classes=64).eval()(x).shape == (2, 64)


def test_a_timm_model_trains_under_two_gloo_processes(tmp_path):
    job = write_job(tmp_path)
    model = {"arch": TINY, "head": "gapnet", "reconstruction_weight": 0.1, "batch_size": 4, "epochs": 1}
    history, oof, ckpt = run(job, tmp_path / "two", processes=2, **model)
    assert list(history["epoch"]) == [1] and oof.shape[1] == NUM_CLASSES
    assert ckpt["config"]["model"]["arch"] == TINY and any(k.startswith("gap_head.") for k in ckpt["model"])

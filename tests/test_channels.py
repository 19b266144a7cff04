"""Any number of channels: caches, models, checkpoints and predict_new for 1, 3 and 5 stains; non-square
fields made square by data.fit; 12-bit camera data in 16-bit files kept by bit_depth auto."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_train import toy_problem
from torch import nn
from torchvision import models as tvm

from hpa.classes import CLASS_NAMES, HPA, Vocabulary
from hpa.config.spec import TrainConfig
from hpa.data.bit_depth import depths, resolve, sample_files
from hpa.data.cache import build_cache, channel_stats
from hpa.data.images import BitDepth, channel_files, decode_field, load_image
from hpa.models import factory
from hpa.models.backbones import ARCHITECTURES, rgb_adapter
from hpa.new_images.ensemble import predict_folder
from hpa.runtime.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from hpa.training.classifier import fit_fold

ONE = Vocabulary(channels=("dapi",), rgb={})
THREE = Vocabulary(classes=tuple(f"class {k}" for k in range(28)), channels=("dapi", "protein", "tubulin"),
                   rgb={"blue": "dapi", "green": "protein", "red": "tubulin"})
FIVE = Vocabulary(channels=("red", "green", "blue", "yellow", "mito"))


def write_field(folder, image_id, channels, plane):
    for k, color in enumerate(channels):
        Image.fromarray(plane + np.asarray(k, plane.dtype)).save(folder / f"{image_id}_{color}.png")


@pytest.mark.parametrize("vocabulary", [ONE, THREE, FIVE], ids=lambda v: f"{v.n_channels}ch")
def test_the_cache_and_its_statistics_hold_every_channel_by_name(tmp_path, vocabulary):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_field(tmp_path, f"im{i}", vocabulary.channels, rng.integers(0, 200, (12, 12), dtype=np.uint8))
    table = pd.DataFrame({"Id": ["im0", "im1", "im2"], "image_dir": str(tmp_path)})
    index = build_cache(table, tmp_path / "c.npy", tmp_path / "c.csv", 8, vocabulary.channels)
    cache = np.load(tmp_path / "c.npy")
    assert cache.shape == (3, vocabulary.n_channels, 8, 8) and index["ok"].all()
    # Channel k of every image was written k grey levels brighter: the order is the vocabulary's.
    direct = load_image(channel_files(tmp_path, "im1", vocabulary.channels), 8)
    np.testing.assert_array_equal(cache[1], direct)
    stats = channel_stats(cache, np.arange(3), vocabulary.channels)
    assert stats["channels"] == list(vocabulary.channels) and len(stats["mean"]) == vocabulary.n_channels
    with pytest.raises(ValueError, match="rebuild the cache"):
        channel_stats(cache, np.arange(3), HPA.channels)


def test_a_colour_image_of_another_channel_name_reads_as_its_brightest_plane(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2] = 120  # a DAPI field rendered blue
    Image.fromarray(rgb).save(tmp_path / "a_dapi.png")
    assert (load_image({"dapi": tmp_path / "a_dapi.png"}) == 120).all()


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_a_field_that_is_not_square_is_padded_cropped_or_stretched_and_the_index_says_which(tmp_path, fit):
    wide = np.full((20, 40), 200, np.uint8)  # 40 wide, 20 high
    wide[:, :10] = 50  # a dim left quarter
    write_field(tmp_path, "wide", ("dapi",), wide)
    write_field(tmp_path, "square", ("dapi",), np.full((40, 40), 200, np.uint8))
    image, (width, height) = decode_field(channel_files(tmp_path, "wide", ("dapi",)), 20, fit=fit)
    assert (width, height) == (40, 20) and image.shape == (1, 20, 20)
    plane = image[0].astype(int)
    if fit == "pad":  # aspect kept: black bands above and below, the dim quarter still a quarter
        assert (plane[:4] == 0).all() and (plane[-4:] == 0).all() and plane[10, 2] < 80 and plane[10, 12] == 200
    elif fit == "crop":  # the centre 20 x 20: the dim quarter cut off
        assert (plane == 200).all()
    else:  # stretched: the dim quarter still a quarter, no black
        assert plane.min() >= 50 and plane[10, 2] < 80 and plane[:, 6:].min() > 150
    table = pd.DataFrame({"Id": ["wide", "square"], "image_dir": str(tmp_path)})
    index = build_cache(table, tmp_path / "c.npy", tmp_path / "c.csv", 20, ("dapi",), fit=fit)
    assert index[["width", "height", "fit"]].values.tolist() == [[40, 20, fit], [40, 40, "square"]]


def test_a_square_field_is_only_resized_whatever_the_fit(tmp_path):
    plane = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    write_field(tmp_path, "sq", ("dapi",), plane)
    images = [load_image(channel_files(tmp_path, "sq", ("dapi",)), 16, fit=fit) for fit in ("pad", "crop", "stretch")]
    assert all(np.array_equal(images[0], other) for other in images[1:])


def twelve_bit_tiffs(folder, channels=("dapi", "protein"), n=4):
    rng = np.random.default_rng(0)
    for i in range(n):
        for color in channels:
            data = rng.integers(0, 4096, (32, 48), dtype=np.uint16)  # a 12-bit camera, 16-bit files
            Image.fromarray(data).save(folder / f"im{i}_{color}.tif")


def test_auto_keeps_the_levels_of_12_bit_data_in_16_bit_files(tmp_path, caplog):
    twelve_bit_tiffs(tmp_path)
    with caplog.at_level(logging.INFO):
        record = resolve(BitDepth(), sample_files(tmp_path, ("dapi", "protein")))
    assert {c: r["bits"] for c, r in record["channels"].items()} == {"dapi": 4, "protein": 4}
    assert "channel dapi: 4 high-bit-depth image(s) sampled" in caplog.text
    image = load_image(channel_files(tmp_path, "im0", ("dapi", "protein")), depth=depths(record, ("dapi", "protein")))
    assert len(np.unique(image[0])) >= 200 and image.max() == 255
    # The old default, a shift by 8, left 16 levels.
    assert len(np.unique(load_image({"dapi": tmp_path / "im0_dapi.tif"}, depth=BitDepth("shift")))) <= 16
    with pytest.raises(ValueError, match="rule auto is measured per dataset"):
        load_image({"dapi": tmp_path / "im0_dapi.tif"})


@pytest.mark.parametrize("bits,problem", [(8, "leaves most of the range unused"), (0, "clips most pixels")])
def test_an_explicit_shift_that_does_not_fit_the_data_is_warned_about_by_key(tmp_path, caplog, bits, problem):
    twelve_bit_tiffs(tmp_path)
    with caplog.at_level(logging.WARNING):
        record = resolve(BitDepth("shift", bits=bits), sample_files(tmp_path, ("dapi", "protein")))
    assert record["channels"]["dapi"]["bits"] == bits  # warned, not overridden
    assert f"data.bit_depth.bits={bits} {problem}" in caplog.text and "data.bit_depth.bits: 4" in caplog.text


def test_8_bit_data_is_not_measured_and_a_fitting_shift_is_not_warned_about(tmp_path, caplog):
    write_field(tmp_path, "a", ("dapi",), np.full((8, 8), 90, np.uint8))
    record = resolve(BitDepth(), sample_files(tmp_path, ("dapi",)))
    assert record["channels"]["dapi"]["images"] == 0 and record["channels"]["dapi"]["bits"] == 8
    twelve_bit_tiffs(tmp_path)
    with caplog.at_level(logging.WARNING):
        resolve(BitDepth("shift", bits=4), sample_files(tmp_path, ("dapi",)))
    assert not caplog.records


MODELS = [(arch, {}) for arch in ARCHITECTURES] + [
    ("resnet18", {"head": "gapnet", "decoder": True}), ("resnet18", {"stem": "adapter"}),
    ("branchnet", {"head": "gapnet", "decoder": True}), ("timm/resnet10t", {}),
    ("timm/resnet10t", {"head": "gapnet"}), ("timm/resnet10t", {"stem": "adapter", "decoder": True}),
]


@pytest.mark.parametrize("vocabulary", [THREE, FIVE], ids=lambda v: f"{v.n_channels}ch")
@pytest.mark.parametrize("arch,options", MODELS, ids=lambda a: a if isinstance(a, str) else "-".join(map(str, a.values())))
def test_every_architecture_takes_any_number_of_channels(vocabulary, arch, options):
    c = vocabulary.n_channels
    model = factory.build_model(arch, [0.1] * c, [0.2] * c, num_classes=7, rgb_source=vocabulary.rgb_source(),
                                **options).eval()
    x = torch.rand(2, c, 32, 32) * 255
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        if options.get("decoder"):
            assert model(x, reconstruct=True)[1].shape == (2, c, 32, 32)


def test_statistics_for_other_channels_than_the_model_are_refused():
    with pytest.raises(ValueError, match="channel statistics for 4 channels, a model of 3"):
        factory.build_model("resnet18", [0.1] * 4, [0.2] * 4, num_classes=28, rgb_source=THREE.rgb_source())


def test_the_stem_and_the_adapter_follow_the_rgb_map():
    torch.manual_seed(0)
    rgb = tvm.resnet18(weights=None)
    pretrained = rgb.conv1.weight.detach().clone()
    torch.manual_seed(0)
    model = factory.build_model("resnet18", num_classes=28, rgb_source=FIVE.rgb_source())
    stem = model.backbone.conv1.weight
    assert stem.shape[1] == 5 and torch.equal(stem[:, :3], pretrained)
    assert torch.equal(stem[:, 3], pretrained[:, :2].mean(1)) and torch.equal(stem[:, 4], stem[:, 3])
    torch.manual_seed(0)
    three = factory.build_model("resnet18", num_classes=28, rgb_source=THREE.rgb_source()).backbone.conv1.weight
    # dapi takes the blue filter, protein the green, tubulin the red.
    assert all(torch.equal(three[:, c], pretrained[:, f]) for c, f in enumerate((2, 1, 0)))
    assert rgb_adapter(THREE.rgb_source()).weight[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert torch.allclose(rgb_adapter(ONE.rgb_source()).weight, torch.ones(3, 1, 1, 1))  # nothing mapped: grey


def test_the_atlas_model_is_initialised_exactly_as_before():
    """The 4-channel stem of the HPA vocabulary: pretrained R, G, B, then mean(R, G) for yellow, drawing the
    same random numbers as the former four_channel_stem (a state-dict comparison against the former code,
    every demo and seeds architecture, gave identical digests)."""
    torch.manual_seed(0)
    reference = tvm.resnet18(weights=None)
    pretrained = reference.conv1.weight.detach().clone()
    nn.Conv2d(4, 64, 7, 2, 3, bias=False)  # the former stem's new conv, initialised then overwritten
    head = nn.Linear(512, 28)
    torch.manual_seed(0)
    model = factory.build_model("resnet18", num_classes=28, rgb_source=HPA.rgb_source())
    stem = model.backbone.conv1.weight
    assert torch.equal(stem[:, :3], pretrained) and torch.equal(stem[:, 3], pretrained[:, :2].mean(1))
    assert torch.equal(model.backbone.fc[1].weight, head.weight)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def train(path, vocabulary, seed=0):
    cache, y = toy_problem(seed=seed)
    cache = np.concatenate([cache] * 2, axis=1)[:, : vocabulary.n_channels]
    stats = {"mean": [0.1] * vocabulary.n_channels, "std": [0.2] * vocabulary.n_channels}
    fit_fold(TrainConfig(epochs=1, batch_size=8, seed=seed), cache, np.arange(32), y[:32], np.arange(32, 48),
             y[32:], stats, vocabulary=vocabulary, checkpoint_path=path, extra={"image_size": 16, "fold": 0})
    return str(path)


@pytest.fixture(scope="module")
def three_channel_checkpoint(tmp_path_factory):
    return train(tmp_path_factory.mktemp("three") / "model.pt", THREE)


def test_a_checkpoint_knows_its_classes_and_channels(three_channel_checkpoint, tmp_path):
    model, ckpt = load_checkpoint(three_channel_checkpoint, torch.device("cpu"))
    assert Vocabulary.from_json(ckpt["config"]["vocabulary"]) == THREE
    assert model.backbone.conv1.in_channels == 3
    # One written before checkpoints recorded them loads as the atlas's 28 classes and 4 channels.
    old = read_checkpoint(train(tmp_path / "hpa.pt", HPA), torch.device("cpu"))
    del old["config"]["vocabulary"]
    save_checkpoint(old, tmp_path / "old.pt")
    model, _ = load_checkpoint(tmp_path / "old.pt", torch.device("cpu"))
    assert model.backbone.conv1.in_channels == 4 and model.backbone.fc[1].out_features == len(CLASS_NAMES)


RECORD = {"method": "per_class", "thresholds": [0.5] * 28}
MEAN = {"combine": "mean", "weights": {"m": 1.0}}


def test_predict_new_refuses_a_folder_of_other_channels_naming_both_lists(three_channel_checkpoint, tmp_path):
    write_field(tmp_path, "a", HPA.channels, np.full((16, 16), 9, np.uint8))
    with pytest.raises(ValueError, match=r"channel names \['blue', 'green', 'red', 'yellow'\] \(files such as "
                                         r"\['a_blue.png', 'a_green.png', 'a_red.png'\]\), the ensemble's "
                                         r"models were trained on \['dapi', 'protein', 'tubulin'\]"):
        predict_folder(tmp_path, {"m": [three_channel_checkpoint]}, MEAN, RECORD, tta="none", aggregate="mean")


def test_predict_new_refuses_checkpoints_that_disagree(three_channel_checkpoint, tmp_path):
    other = train(tmp_path / "hpa.pt", HPA)
    with pytest.raises(ValueError, match=r"disagree in their classes: .* has \['class 0', .* has \['Nucleoplasm'"):
        predict_folder(tmp_path, {"m": [three_channel_checkpoint, other]}, MEAN, RECORD, tta="none", aggregate="mean")


def test_predict_new_names_its_probability_columns_by_class(tmp_path):
    path = train(tmp_path / "hpa.pt", HPA)
    folder = tmp_path / "new"
    folder.mkdir()
    write_field(folder, "a", HPA.channels, np.full((20, 12), 9, np.uint8))  # not square: padded as cached
    table = predict_folder(folder, {"m": [path]}, MEAN, RECORD, tta="none", aggregate="mean",
                           depth=BitDepth("shift"))
    assert list(table.columns[1:4]) == ["p_Nucleoplasm", "p_Nuclear membrane", "p_Nucleoli"]
    assert table["ok"].all() and "p0" not in table.columns


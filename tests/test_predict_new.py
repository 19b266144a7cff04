import numpy as np
import pytest
from PIL import Image

from hpa.classes import CHANNELS
from hpa.data.images import BitDepth
from hpa.inference.new_images import predict_folder
from hpa.training.classifier import fit_fold
from hpa.training.config import TrainConfig

from test_train import STATS, toy_problem


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    cache, y = toy_problem()
    fit_fold(TrainConfig(epochs=2, batch_size=8), cache, np.arange(32), y[:32], np.arange(32, 48), y[32:],
             STATS, checkpoint_path=folder / "model.pt", extra={"image_size": 16, "fold": 0})
    return str(folder / "model.pt")


def write_image(folder, image_id, size, green_square: bool, colors=CHANNELS):
    for color in colors:
        plane = np.full((size, size), 10, dtype=np.uint8)
        if color == "green" and green_square:
            plane[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 200
        Image.fromarray(plane).save(folder / f"{image_id}_{color}.png")


def test_predict_folder_classifies_images_of_any_size_and_skips_broken_ones(tmp_path, checkpoint):
    write_image(tmp_path, "big", 64, True)  # 4x the training size
    write_image(tmp_path, "small", 16, False)
    write_image(tmp_path, "partial", 16, True, colors=("red", "green", "blue"))
    (tmp_path / "corrupt_red.png").write_bytes(b"junk")
    for color in ("green", "blue", "yellow"):
        write_image(tmp_path, "corrupt", 16, False, colors=(color,))
    record = {"thresholds": [0.5] * 28, "top1": True}
    table = predict_folder(tmp_path, {"m": [checkpoint, checkpoint]}, {"combine": "mean", "weights": {"m": 1.0}},
                           record, tta="flips", aggregate="mean").set_index("Id")
    assert set(table.index) == {"big", "small", "partial", "corrupt"}
    assert table.loc["big", "ok"] and table.loc["small", "ok"]
    assert not table.loc["partial", "ok"] and not table.loc["corrupt", "ok"]
    assert table.loc["big", "Predicted"] != ""  # top1: at least one class
    names = table.loc["big", "Predicted_names"].split("; ")
    assert len(names) == len(table.loc["big", "Predicted"].split())
    assert 0 <= table.loc["big", "p0"] <= 1


def test_missing_folder_says_what_to_set(tmp_path, checkpoint):
    with pytest.raises(FileNotFoundError, match="new_images"):
        predict_folder(tmp_path / "nope", {"m": [checkpoint]}, {"combine": "mean", "weights": {"m": 1.0}},
                       {"thresholds": [0.5] * 28}, tta="none", aggregate="mean")


def test_a_timm_checkpoint_predicts_a_folder_of_mixed_formats(tmp_path):
    cache, y = toy_problem()
    path = tmp_path / "timm.pt"
    fit_fold(TrainConfig(arch="timm/resnet10t", epochs=1, batch_size=8), cache, np.arange(32), y[:32],
             np.arange(32, 48), y[32:], STATS, checkpoint_path=path, extra={"image_size": 16, "fold": 0})
    folder = tmp_path / "new"
    folder.mkdir()
    write_image(folder, "png", 24, True)
    for color in CHANNELS:  # the same image as 16-bit TIFFs, 4 bits of headroom: bits=4 gives it back
        plane = np.asarray(Image.open(folder / f"png_{color}.png")).astype(np.uint16)
        Image.fromarray(plane << 4).save(folder / f"tiff_{color}.tiff")
    table = predict_folder(folder, {"m": [str(path)]}, {"combine": "mean", "weights": {"m": 1.0}},
                           {"thresholds": [0.5] * 28}, tta="none", aggregate="mean",
                           depth=BitDepth(bits=4)).set_index("Id")
    assert table["ok"].all() and list(table.index) == ["png", "tiff"]
    probs = table[[f"p{k}" for k in range(28)]]
    assert np.allclose(probs.loc["png"], probs.loc["tiff"], atol=1e-6)

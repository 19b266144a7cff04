"""Crop training and crop TTA: the cache at cache_size, random crops of image_size, a grid of crops at inference."""

import numpy as np
import pytest
import torch
from test_formats import mixed_source  # noqa: F401  (a fixture: mixed formats and sizes)

from hpa.classes import CHANNELS, HPA
from hpa.config.spec import TrainConfig
from hpa.crops import center, crop_boxes, random_crops, take
from hpa.data.cache import build_cache
from hpa.data.images import BitDepth
from hpa.data.ingest import ingest
from hpa.dihedral import transforms_for
from hpa.inference.tta import predict_probs, predict_views
from hpa.runtime.checkpoint import load_checkpoint
from hpa.runtime.loader import CachedImages, make_loader
from hpa.tables import labels_to_matrix
from hpa.training.classifier import fit_fold

STATS = {"mean": [0.1] * 4, "std": [0.2] * 4}


def test_crop_grids_place_their_crops():
    assert crop_boxes(10, 4, "center") == [(3, 3)]
    assert crop_boxes(10, 4, "corners") == [(0, 0), (0, 6), (6, 0), (6, 6)]
    assert crop_boxes(10, 4, "five")[-1] == (3, 3) and len(crop_boxes(10, 4, "five")) == 5
    assert crop_boxes(10, 4, "tiles3") == [(t, s) for t in (0, 3, 6) for s in (0, 3, 6)]
    assert crop_boxes(10, None, "five") == [None] and crop_boxes(10, 4, "none") == [None]
    with pytest.raises(ValueError, match="larger than the 10 px image"):
        crop_boxes(10, 12, "center")
    with pytest.raises(ValueError, match="predict.crops: 'tiles1'"):
        crop_boxes(10, 4, "tiles1")


def test_random_crops_are_exact_windows_drawn_from_the_seed():
    x = torch.arange(2 * 4 * 12 * 12, dtype=torch.int32).reshape(2, 4, 12, 12).to(torch.uint8)
    crops = random_crops(x, 5, torch.Generator().manual_seed(0))
    again = random_crops(x, 5, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 4, 5, 5) and crops.dtype == torch.uint8 and torch.equal(crops, again)
    for i in range(2):
        windows = [take(x[i], (t, s), 5) for t in range(8) for s in range(8)]
        assert any(torch.equal(crops[i], w) for w in windows)
    lefts = {tuple(random_crops(x, 5, torch.Generator().manual_seed(k))[0, 0, 0, :1].tolist()) for k in range(20)}
    assert len(lefts) > 3  # the window moves


def test_a_rescaled_crop_sees_a_wider_window_at_the_crop_size():
    x = torch.zeros(1, 4, 32, 32)
    x[..., 8:24, 8:24] = 200.0  # a bright 16 px square in the middle
    wide = random_crops(x, 16, torch.Generator().manual_seed(0), scale=(0.5, 0.5))  # a 32 px window
    assert wide.shape == (1, 4, 16, 16)
    # The whole field shrunk to 16 px: the square covers the middle half, the border is dark.
    assert wide[..., 6:10, 6:10].min() > 150 and wide[..., :2, :2].max() < 50


@pytest.fixture
def crop_run(mixed_source, tmp_path):  # noqa: F811
    """Mixed 16-bit TIFFs, colour JPEGs and PNGs of four sizes, cached at 32 px; a model trained on 24 px crops."""
    manifest, _ = ingest(mixed_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    index = build_cache(train, tmp_path / "c.npy", tmp_path / "c.csv", size=32, channels=CHANNELS,
                        depth=BitDepth(rule="shift"))
    cache = np.load(tmp_path / "c.npy", mmap_mode="r")
    y = labels_to_matrix(train.set_index("Id").loc[index["Id"], "Target"], 28)
    rows = index["row"].to_numpy()
    cfg = TrainConfig(epochs=1, batch_size=2, augment={"crop_scale": [0.8, 1.2]})
    history, oof = fit_fold(cfg, cache, rows, y, rows, y, STATS, vocabulary=HPA, checkpoint_path=tmp_path / "model.pt",
                            crop=24, extra={"image_size": 32, "crop": 24})
    return cache, rows, history, oof, tmp_path / "model.pt"


def test_training_on_crops_of_a_larger_cache_and_predicting_on_the_crop_grid(crop_run):
    cache, rows, history, oof, checkpoint = crop_run
    assert cache.shape == (4, 4, 32, 32) and oof.shape == (4, 28) and len(history) == 1
    model, ckpt = load_checkpoint(checkpoint, torch.device("cpu"))
    assert ckpt["config"]["crop"] == 24
    loader = make_loader(CachedImages(cache, rows), 3)
    per_view = predict_views(model, loader, torch.device("cpu"), transforms_for("flips"), n_classes=28, crop=24, grid="five")
    assert per_view.shape == (5 * 4, 4, 28)  # five crops x four flips, every image
    mean = predict_probs(model, loader, torch.device("cpu"), tta="flips", n_classes=28, crop=24, grid="five")
    top = predict_probs(model, loader, torch.device("cpu"), tta="flips", aggregate="max", n_classes=28, crop=24, grid="five")
    assert np.allclose(mean, per_view.mean(0), atol=1e-6) and np.allclose(top, per_view.max(0), atol=1e-6)


def test_each_crop_of_the_grid_sees_its_own_pixels_and_validation_the_centre(tmp_path):
    cache = np.random.default_rng(0).integers(0, 255, (6, 4, 32, 32), dtype=np.uint8)
    y = np.zeros((6, 28), np.uint8)
    y[:3, 0] = 1
    rows = np.arange(6)
    _, oof = fit_fold(TrainConfig(epochs=1, batch_size=3), cache, rows, y, rows, y, STATS, vocabulary=HPA,
                      checkpoint_path=tmp_path / "model.pt", crop=24)
    model, _ = load_checkpoint(tmp_path / "model.pt", torch.device("cpu"))
    per_view = predict_views(model, make_loader(CachedImages(cache, rows), 4), torch.device("cpu"), [0],
                             n_classes=28, crop=24, grid="five")
    assert per_view.shape == (5, 6, 28)
    assert not np.allclose(per_view[0], per_view[1])  # two corners see different pixels
    assert np.allclose(per_view[4], oof, atol=1e-5)  # validation during training saw the centre crop


def test_the_centre_crop_is_the_middle_window():
    x = torch.arange(36).reshape(1, 1, 6, 6)
    assert center(x, 2).flatten().tolist() == [14, 15, 20, 21] and center(x, None) is x

"""Class maps (hpa.inference.cams): every model family, the TTA views' inverses, CAM against a hand computation,
Grad-CAM against CAM, a toy model that learns where its class is, and the dilated (finer) grid."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from hpa.dihedral import dihedral, dihedral_inverse
from hpa.inference.cams import class_maps
from hpa.models.branchnet import BranchNet
from hpa.models.dilation import dilated
from hpa.models.factory import build_model
from hpa.models.heads import HPANet

RGBY = (0, 1, 2, None)


def images(n=2, channels=4, size=64, seed=0):
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("options,grid", [
    ({"arch": "resnet18"}, 2),
    ({"arch": "resnet18", "stem": "adapter"}, 2),
    ({"arch": "resnet18", "head": "gapnet"}, 2),
    ({"arch": "resnet18", "decoder": True}, 2),
    ({"arch": "branchnet"}, 4),
    ({"arch": "efficientnet_b0"}, 2),
    ({"arch": "timm/resnet18"}, 2),
    ({"arch": "timm/resnet18", "head": "gapnet"}, 2),
    ({"arch": "timm/convnext_atto"}, 2),  # a norm after pooling: Grad-CAM
])
def test_every_family_gives_non_negative_float16_maps_at_its_feature_grid(options, grid):
    torch.manual_seed(0)
    model = build_model(num_classes=3, rgb_source=RGBY, **options)
    maps = class_maps(model, images(), views=(0, 5))
    assert maps.shape == (2, 3, grid, grid) and maps.dtype == np.float16
    assert (maps >= 0).all() and np.isfinite(maps).all()
    assert class_maps(model, images(), classes=[2]).shape == (2, 1, grid, grid)


def test_the_inverse_undoes_each_view_on_rectangles():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    for t in range(8):
        assert torch.equal(dihedral_inverse(dihedral(x, t), t), x)


def symmetric_branchnet(n_classes=3):
    """A branch CNN whose every kernel is symmetric under the dihedral group: it is exactly equivariant at 32 px."""
    torch.manual_seed(0)
    net = BranchNet(n_classes, channels=2, widths=(4, 8), shared=(8,))
    with torch.no_grad():
        for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.copy_(sum(dihedral(conv.weight, t) for t in range(8)) / 8)
    return HPANet(net, [], (0.5, 0.5), (0.25, 0.25)).eval()


def test_each_view_is_brought_back_to_the_original_frame():
    model = symmetric_branchnet()
    x = images(channels=2, size=32)
    plain = class_maps(model, x).astype(np.float32)
    assert plain.std() > 0
    for t in range(1, 8):
        seen = class_maps(model, x, views=(t,)).astype(np.float32)
        np.testing.assert_allclose(seen, plain, atol=2e-3 * plain.max())
        # Without the inverse, an asymmetric image's map would be seen turned.
        assert not np.allclose(dihedral(torch.from_numpy(plain), t).numpy(), plain, atol=2e-3 * plain.max())
    np.testing.assert_allclose(class_maps(model, x, views=range(8)).astype(np.float32), plain, atol=2e-3 * plain.max())


def resnet18(n_classes=4):
    torch.manual_seed(0)
    return build_model("resnet18", num_classes=n_classes, rgb_source=RGBY, normalize="image").eval()


def test_cam_is_the_last_feature_map_weighted_by_the_linear_layer():
    model, x = resnet18(), images()
    net = model.backbone
    with torch.no_grad():
        a = model.normalize(x)
        for layer in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4):
            a = layer(a)
        manual = torch.relu(torch.einsum("ck,nkhw->nchw", net.fc[1].weight, a)).numpy()
    maps = class_maps(model, x, method="cam")
    np.testing.assert_allclose(maps.astype(np.float32), manual, rtol=2e-3, atol=1e-3 * manual.max())


def test_gradcam_on_a_pooled_linear_head_is_cam_over_the_grid_area():
    model, x = resnet18(), images(size=96)  # a 3x3 grid
    cam = class_maps(model, x, method="cam").astype(np.float32)
    grad = class_maps(model, x, method="gradcam").astype(np.float32)
    np.testing.assert_allclose(grad * 9, cam, rtol=5e-3, atol=1e-3 * cam.max())


def test_cam_is_refused_where_the_head_is_not_pooled_linear():
    model = build_model("resnet18", num_classes=2, rgb_source=RGBY, head="gapnet")
    with pytest.raises(ValueError, match="gradcam"):
        class_maps(model, images(), method="cam")
    with pytest.raises(ValueError, match="out of range"):
        class_maps(model, images(), classes=[2])


def blobs(n, rng):
    """One-channel 32 px noise; class 0: a bright blob somewhere in the left half, class 1: one in the right half."""
    x = rng.normal(40, 10, (n, 1, 32, 32))
    y = rng.random((n, 2)) < 0.5
    yy, xx = np.mgrid[:32, :32]
    for i in range(n):
        for c, (lo, hi) in enumerate(((3, 13), (19, 29))):
            if y[i, c]:
                cy, cx = rng.integers(3, 29), rng.integers(lo, hi)
                x[i, 0] += 180 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
    return torch.from_numpy(x.clip(0, 255).astype(np.uint8)), torch.from_numpy(y.astype(np.float32))


def test_a_toy_model_maps_its_class_where_the_class_was_drawn():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = HPANet(BranchNet(2, channels=1, widths=(8, 16), shared=(32,)), [], (0.2,), (0.1,))
    x, y = blobs(256, rng)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(2):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    test, truth = blobs(64, rng)
    maps = class_maps(model, test, views=(0, 4)).astype(np.float32)  # (64, 2, 8, 8)
    assert maps.shape == (64, 2, 8, 8)
    only = (truth[:, 0] == 1) & (truth[:, 1] == 0)
    peak_columns = maps[only.numpy(), 0].reshape(int(only.sum()), -1).argmax(1) % 8
    assert (peak_columns < 4).mean() >= 0.8


def test_dilated_resnet_maps_are_finer_and_agree_with_the_original_on_its_grid():
    model, x = resnet18(), images()
    coarse = class_maps(model, x).astype(np.float32)
    for stages, grid in ((1, 4), (2, 8)):
        fine = class_maps(dilated(model, stages), x).astype(np.float32)
        assert fine.shape == (2, 4, grid, grid)
        step = 2 ** stages
        np.testing.assert_allclose(fine[..., ::step, ::step], coarse, atol=1e-3 * coarse.max())
    assert dilated(model, 0) is model
    with pytest.raises(ValueError, match="ResNets"):
        dilated(symmetric_branchnet(), 1)


def test_each_cell_is_shown_alone_at_its_place_in_the_cached_field(tmp_path):
    from PIL import Image

    from hpa.inference.per_cell import CellOutputs, cells_in_frame, write_cell_probabilities

    mask = np.zeros((64, 96), np.int32)  # a 96 x 64 field padded to a square, cached at 32 px
    mask[:32, :48], mask[40:, 60:], mask[0, 95] = 1, 2, 3
    ids, planes = cells_in_frame(mask, "pad", 32)
    assert ids.tolist() == [1, 2, 3] and planes.shape == (3, 32, 32)
    assert planes[0, 5:16, :16].all() and not planes[0, :5].any()  # the pad's top 16 px rows are 5 rows at 32 px
    assert not planes[2].any()  # one pixel: lost at 32 px
    Image.fromarray(mask.astype(np.uint16)).save(tmp_path / "a.png")
    cache = np.random.default_rng(0).integers(0, 256, (2, 4, 32, 32), dtype=np.uint8)
    table = pd.DataFrame({"Id": ["a", "b"], "row": [0, 1], "fit": ["pad", "square"]})  # b has no mask: skipped
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x.clone())
            return x.float().mean(dim=(2, 3))[:, :3] + self.w

    out = CellOutputs(maps="", cells=str(tmp_path / "cells.npz"), masks=str(tmp_path), views=(0, 4))
    assert write_cell_probabilities(Recorder(), cache, table, out, batch_size=2) == 3
    with np.load(tmp_path / "cells.npz") as saved:
        assert saved["ids"].tolist() == ["a"] * 3 and saved["cells"].tolist() == [1, 2, 3]
        probs = saved["probs"]
    identity = torch.cat(seen[0::2])  # each batch is seen through view 0, then view 4
    expected = torch.from_numpy(cache[0]) * torch.from_numpy(planes[:, None])
    assert torch.equal(identity, expected)
    assert np.allclose(probs, torch.sigmoid(expected.float().mean(dim=(2, 3))[:, :3]).numpy(), atol=1e-6)

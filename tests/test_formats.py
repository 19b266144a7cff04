"""Channel images in any format and size: PNG, TIFF and colour JPEG, 8 and 16-bit, through ingest and the cache."""

import io

import numpy as np
import pytest
from conftest import SHARED_HPA
from PIL import Image

from hpa.classes import CHANNELS, HPA
from hpa.data.cache import build_cache
from hpa.data.images import BitDepth, channel_files, find_channel, list_channels, load_image, percentiles
from hpa.data.ingest import FULL_SIZE_DIRS, ingest
from hpa.external.download import to_plane
from hpa.new_images.folder import list_images

# Each channel's 16-bit value in the TIFF images: distinct high bytes 0x12, 0x34, 0x56, 0x78.
TIFF_VALUES = {"red": 0x12FF, "green": 0x3401, "blue": 0x5680, "yellow": 0x78AB}
# The atlas's tints: the channel's signal in R, G, B, and yellow in R and G.
TINT = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}


def write_tiff16(folder, image_id, size, values=TIFF_VALUES, ext=".tif"):
    for color in CHANNELS:
        Image.fromarray(np.full((size, size), values[color], dtype=np.uint16)).save(folder / f"{image_id}_{color}{ext}")


def write_png(folder, image_id, size, value=90, bits=8):
    dtype = np.uint8 if bits == 8 else np.uint16
    for color in CHANNELS:
        Image.fromarray(np.full((size, size), value, dtype=dtype)).save(folder / f"{image_id}_{color}.png")


def tinted(color, size, value):
    rgb = np.zeros((size, size, 3), dtype=np.uint8)
    rgb[...] = np.array(TINT[color]) * value
    return Image.fromarray(rgb)


def write_colour_jpeg(folder, image_id, size, value=200):
    for color in CHANNELS:
        tinted(color, size, value).save(folder / f"{image_id}_{color}.jpg", quality=95)


@pytest.fixture
def mixed_source(tmp_path):
    """A Kaggle-layout source whose images are 16-bit TIFFs, colour JPEGs and PNGs of four sizes."""
    root = tmp_path / "kaggle"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
    write_tiff16(root / "train", "tif", 48)
    write_colour_jpeg(root / "train", "jpg", 40)
    write_png(root / "train", "png", 24)
    write_png(root / "train", "png16", 32, value=0x2000, bits=16)
    write_tiff16(root / "test", "tif_test", 64, ext=".tiff")
    write_png(root / "test", "twice", 24)
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "test" / "twice_red.tif")  # a second red file
    (root / "train.csv").write_text("Id,Target\ntif,0\njpg,1 2\npng,3\npng16,4\n")
    (root / "sample_submission.csv").write_text("Id,Predicted\ntif_test,0\ntwice,0\n")
    return root


def test_ingest_reads_every_format_and_size_and_rejects_two_files_for_one_channel(mixed_source):
    manifest, rejected = ingest(mixed_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    sizes = dict(zip(manifest["Id"], manifest["width"]))
    assert sizes == {"tif": 48, "jpg": 40, "png": 24, "png16": 32, "tif_test": 64}
    assert list(rejected["Id"]) == ["twice"]
    assert "channel red has 2 files (twice_red.png, twice_red.tif); keep one" in rejected["reason"].iloc[0]


@pytest.mark.parametrize("size", [16, 96])  # smaller and larger than every source image
def test_the_cache_holds_every_format_at_its_size_with_16_bits_shifted(mixed_source, tmp_path, size):
    manifest, _ = ingest(mixed_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    index = build_cache(train, tmp_path / "c.npy", tmp_path / "c.csv", size=size, channels=CHANNELS,
                        depth=BitDepth(rule="shift"))
    cache = np.load(tmp_path / "c.npy")
    assert index["ok"].all() and cache.shape == (4, 4, size, size)
    rows = dict(zip(index["Id"], index["row"]))
    # shift by 8: the high byte of each 16-bit value; a flat plane stays flat when resized.
    np.testing.assert_array_equal(cache[rows["tif"]].max(axis=(1, 2)), [0x12, 0x34, 0x56, 0x78])
    np.testing.assert_array_equal(cache[rows["tif"]].min(axis=(1, 2)), [0x12, 0x34, 0x56, 0x78])
    assert (cache[rows["png16"]] == 0x20).all() and (cache[rows["png"]] == 90).all()
    # Each colour JPEG gives the channel's tinted plane, not its luminance (blue would read 23).
    assert np.abs(cache[rows["jpg"]].astype(int) - 200).max() <= 3


def test_bit_depth_rules_on_known_values():
    values = np.array([[0, 4095], [256, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(BitDepth(rule="shift").to_uint8(values), [[0, 15], [1, 255]])
    np.testing.assert_array_equal(BitDepth("shift", bits=4).to_uint8(values), [[0, 255], [16, 255]])  # 12-bit data
    ramp = np.arange(0, 1001, dtype=np.uint16).reshape(7, 143)
    stretched = BitDepth(rule="percentile", low=0, high=100).to_uint8(ramp)
    assert stretched.min() == 0 and stretched.max() == 255 and stretched[3, 500 - 3 * 143] == round(500 * 255 / 1000)
    clipped = BitDepth(rule="percentile", low=10, high=90).to_uint8(ramp)
    assert (clipped[ramp <= 100] == 0).all() and (clipped[ramp >= 900] == 255).all()  # 10% either side saturate
    assert clipped[ramp == 580] == 153  # (580 - 100) / (900 - 100) of 255


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_histogram_percentiles_are_numpys(dtype, rng):
    arr = (rng.gamma(2.0, 300.0, (97, 89)) % np.iinfo(np.uint8 if dtype == np.uint8 else np.uint16).max).astype(dtype)
    qs = (0, 0.5, 3.7, 50, 99.5, 100)
    np.testing.assert_allclose(percentiles(arr, qs), np.percentile(arr, qs), rtol=1e-9)


def test_percentile_rule_scales_each_channel_of_each_image_on_its_own(tmp_path):
    for color, top in zip(CHANNELS, (1000, 20000, 300, 65535)):
        Image.fromarray(np.linspace(0, top, 64 * 64).reshape(64, 64).astype(np.uint16)).save(
            tmp_path / f"a_{color}.tif")
    image = load_image(channel_files(tmp_path, "a", CHANNELS), depth=BitDepth(rule="percentile", low=0, high=100))
    np.testing.assert_array_equal(image.max(axis=(1, 2)), [255] * 4)
    # shifted, the dim blue channel all but vanishes
    assert (load_image(channel_files(tmp_path, "a", CHANNELS), depth=BitDepth("shift"))[2] <= 1).all()


@pytest.mark.parametrize("field", [{"rule": "gamma"}, {"bits": 30}, {"low": 60, "high": 40}])
def test_a_bad_bit_depth_names_its_key(field):
    with pytest.raises(ValueError, match="data.bit_depth"):
        BitDepth(**field)


def test_precedence_prefers_lossless_files_and_reads_upper_case_extensions(tmp_path):
    write_png(tmp_path, "a", 8, value=7)
    tinted("red", 8, 100).save(tmp_path / "a_red.jpg")
    assert find_channel(tmp_path, "a", "red").name == "a_red.png"
    assert [p.suffix for p in list_channels(tmp_path, CHANNELS)["a"]["red"]] == [".png", ".jpg"]
    Image.fromarray(np.full((8, 8), 0x0900, np.uint16)).save(tmp_path / "b_red.TIF")
    assert find_channel(tmp_path, "b", "red").name == "b_red.TIF"
    with pytest.raises(FileNotFoundError, match="no b_green file with any of .png/.tif/.tiff/.jpg/.jpeg"):
        find_channel(tmp_path, "b", "green")


def test_predict_new_lists_a_folder_of_mixed_formats(tmp_path):
    write_tiff16(tmp_path, "t", 32)
    write_colour_jpeg(tmp_path, "j", 20)
    write_png(tmp_path, "p", 16)
    write_png(tmp_path, "d", 16)
    tinted("blue", 16, 50).save(tmp_path / "d_blue.jpeg")
    for color in ("red", "green"):
        tinted(color, 16, 50).save(tmp_path / f"m_{color}.jpg")
    (tmp_path / "notes_about.txt").write_text("not an image")
    ids, broken = list_images(tmp_path, CHANNELS)
    assert list(ids) == ["j", "p", "t"]
    problems = dict(broken)
    assert set(problems) == {"d", "m"}
    assert "channel blue has 2 files" in problems["d"] and "missing channel blue, yellow" in problems["m"]


def test_full_size_layout_reads_the_full_size_folders(mixed_source):
    for split in ("train", "test"):
        (mixed_source / split).rename(mixed_source / FULL_SIZE_DIRS[split])
    manifest, _ = ingest(mixed_source, "kaggle", vocab=HPA, max_rejected_fraction=0.5, image_dirs=FULL_SIZE_DIRS)
    assert len(manifest) == 5 and manifest["image_dir"].str.endswith("_full_size").all()


@pytest.mark.skipif(not (SHARED_HPA / "images").is_dir(), reason="no real HPAv18 sample images")
def test_real_atlas_jpegs_decode_as_the_download_converts_them():
    folder = SHARED_HPA / "images"
    image_id = sorted(list_channels(folder, CHANNELS))[0]
    image = load_image(channel_files(folder, image_id, CHANNELS), 128)
    for plane, color in zip(image, CHANNELS):
        body = find_channel(folder, image_id, color).read_bytes()
        np.testing.assert_array_equal(plane, to_plane(body, color, 128))
    assert image.shape == (4, 128, 128) and image.std(axis=(1, 2)).min() > 1


def test_to_plane_reads_a_16_bit_tiff_body_by_the_depth_rule():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 0x0F00, np.uint16)).save(buffer, format="TIFF")
    assert (to_plane(buffer.getvalue(), "green", 4) == 0x0F).all()
    assert (to_plane(buffer.getvalue(), "green", 4, depth=BitDepth("shift", bits=4)) == 0xF0).all()

"""Every high-bit-depth image checked where it is decoded (issue 29): a field exported at the full 16-bit
range among a 12-bit camera's is listed as clipped, warned about, named in the summary, and too many
of them stop the run naming the keys that fix it."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hpa.data.bit_depth import resolve, sample_files
from hpa.data.cache import build_cache
from hpa.data.clipping import Clipping, check, note
from hpa.data.images import BitDepth, decode_field, range_shares
from hpa.files import InputError
from hpa.new_images.folder import batches, list_images
from hpa.postprocess.summary import summary

STAINS = ("dapi", "protein")


def twelve_bit(rng, shape=(24, 32)):
    """A 12-bit camera's plane: a dark offset and cells up to 4095."""
    plane = rng.uniform(80, 200, shape)
    plane[6:18, 8:24] = rng.uniform(1500, 4095, (12, 16))
    return np.rint(plane).astype(np.uint16)


def write_field(folder, image_id, rng, full_range=False):
    for stain in STAINS:
        plane = twelve_bit(rng)
        if full_range and stain == "protein":  # what some acquisition software exports: x16
            plane = plane * 16
        Image.fromarray(plane).save(folder / f"{image_id}_{stain}.tif")


@pytest.fixture
def screen(tmp_path):
    """Ten 12-bit fields and one whose protein channel was exported at the full 16-bit range."""
    rng = np.random.default_rng(0)
    for k in range(10):
        write_field(tmp_path, f"f{k}", rng)
    write_field(tmp_path, "full", rng, full_range=True)
    return tmp_path


def manifest(folder, ids):
    return pd.DataFrame({"Id": ids, "image_dir": str(folder)})


def test_the_shares_at_the_top_and_at_zero():
    plane = np.array([[0, 0, 255, 12]], dtype=np.uint8)
    assert range_shares(plane) == (0.25, 0.5)


def test_auto_measures_the_sample_and_the_full_range_field_clips_half_its_protein(screen):
    # The sample (24 of hundreds of fields) did not draw the odd one: the 12-bit fields set the shift.
    sample = {s: [screen / f"f{k}_{s}.tif" for k in range(10)] for s in STAINS}
    record = resolve(BitDepth(), sample)
    assert record["channels"]["protein"]["bits"] == 4
    shares = {}
    decode_field({s: screen / f"full_{s}.tif" for s in STAINS}, None, BitDepth("shift", bits=4), shares=shares)
    assert shares["protein"][0] > 0.2 and shares["dapi"][0] < 0.01
    assert Clipping().rows("full", shares)[0]["channel"] == "protein"


def test_cache_images_lists_the_clipped_field(screen, tmp_path):
    ids = [f"f{k}" for k in range(10)] + ["full"]
    index = build_cache(manifest(screen, ids), tmp_path / "c.npy", tmp_path / "c.csv", 16, STAINS,
                        depth=BitDepth("shift", bits=4), clipped_path=tmp_path / "clipped.csv")
    clipped = pd.read_csv(tmp_path / "clipped.csv")
    assert list(clipped["Id"]) == ["full"] and list(clipped["channel"]) == ["protein"]
    assert clipped["bright_share"].iloc[0] > 0.2
    assert index.set_index("Id").at["full", "clipped"].startswith("protein ")
    assert (index.set_index("Id").loc[ids[:10], "clipped"] == "").all()


def test_one_clipped_field_is_warned_about_and_too_many_stop_the_run_naming_the_keys(capsys):
    clipped = pd.DataFrame([{"Id": "full", "channel": "protein", "bright_share": 0.48, "dark_share": 0.0}])
    check(clipped, 200, 0.01, "train images")
    err = capsys.readouterr().err
    assert "1 of 200 images clipped" in err and "full (protein: 48% at 255" in err
    with pytest.raises(InputError, match="data.max_rejected_fraction=0.01.*data.bit_depth.rule: percentile"):
        check(clipped, 11, 0.01, "train images")


def test_predict_new_records_each_images_clipped_channels(screen):
    clipped = {}
    ids = ["f0", "full"]
    files, _ = list_images(screen, STAINS)
    for _ in batches(files, ids, STAINS, {16}, {s: BitDepth("shift", bits=4) for s in STAINS}, batch=2,
                     clipped=clipped):
        pass
    assert clipped["f0"] == [] and note(clipped["full"]).startswith("protein ")


def test_a_shift_that_does_not_fit_is_warned_about_on_the_terminal_and_kept_for_the_summary(screen, capsys):
    record = resolve(BitDepth("shift", bits=8), sample_files(screen, STAINS))
    assert any("data.bit_depth.bits=8 leaves most of the range unused" in w for w in record["warnings"])
    assert "data.bit_depth.bits=8" in capsys.readouterr().err


def test_the_summary_names_the_clipped_images_and_the_bit_depth_warnings(tmp_path):
    (tmp_path / "results/data/clipped").mkdir(parents=True)
    (tmp_path / "results/cache").mkdir(parents=True)
    pd.DataFrame([{"Id": "full", "channel": "protein", "bright_share": 0.48, "dark_share": 0.0}]).to_csv(
        tmp_path / "results/data/clipped/train.csv", index=False)
    (tmp_path / "results/cache/bit_depth.json").write_text(json.dumps({"warnings": ["data.bit_depth.bits=8 x"]}))
    text = summary(tmp_path, [])
    assert ("Images clipped by the bit-depth rule (train): 1, e.g. full (protein 48% at 255, 0% at 0); each with "
            "its channel and shares in results/data/clipped/train.csv") in text
    assert "Bit depth: data.bit_depth.bits=8 x" in text

"""The stand-ins for other datasets (hpa.demo.screen): what they are made to be, and reproducible."""

import numpy as np
import pandas as pd
from PIL import Image

from hpa.demo.render import render_field
from hpa.demo.screen import HPA2021_CLASSES, LAB_CLASSES, draw_label_sets, make_screen


def test_a_lab_screen_is_a_sample_sheet_of_rectangular_12_bit_tiffs(tmp_path):
    sheet = make_screen(tmp_path, n_train=12, n_test=4, shape=(40, 56), seed=1, min_per_class=1)
    table = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["Id", "split", "Target", "dapi", "protein", "tubulin"]
    assert table["split"].value_counts().to_dict() == {"train": 12, "test": 4}
    names = set(LAB_CLASSES)
    assert all(set(t.split(";")) <= names for t in table["Target"]), "classes by the lab's names, ';'-separated"
    for column in ("dapi", "protein", "tubulin"):
        with Image.open(tmp_path / table.loc[0, column]) as im:
            plane = np.asarray(im)
        assert im.mode.startswith("I;16") and plane.shape == (40, 56)
        assert plane.max() < 4096 and len(np.unique(plane)) > 200, "12 bits used, written into 16-bit files"
    assert {p.parent.name for p in tmp_path.glob("plate*/*.tif")} == {"plate1", "plate2", "plate3", "plate4"}


def test_the_same_seed_writes_the_same_screen(tmp_path):
    a = make_screen(tmp_path / "a", n_train=4, n_test=2, shape=(32, 40), seed=3, min_per_class=0)
    b = make_screen(tmp_path / "b", n_train=4, n_test=2, shape=(32, 40), seed=3, min_per_class=0)
    assert a.read_text() == b.read_text()
    first = sorted((tmp_path / "a").glob("plate*/*.tif"))
    assert all(p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes() for p in first)


def test_label_sets_follow_the_atlas_restricted_to_the_chosen_classes():
    rng = np.random.default_rng(0)
    sets = draw_label_sets(3000, LAB_CLASSES, rng, min_per_class=2)
    counts = np.bincount([k for s in sets for k in s], minlength=len(LAB_CLASSES))
    assert all(sets) and counts.min() >= 2
    assert counts.argmax() == 0, "nucleus (the atlas's nucleoplasm) is the commonest, as in the atlas"
    assert counts.max() / counts.min() > 10, "and the classes are imbalanced"


def test_the_2021_layout_has_a_standalone_negative_and_several_sizes(tmp_path):
    folder = make_screen(tmp_path, n_train=40, n_test=6, classes=HPA2021_CLASSES, spelling="indices", separator="|",
                         layout="kaggle", id_column="ID", target_column="Label", sizes=(48, 64),
                         stains={c: c for c in ("red", "green", "blue", "yellow")}, seed=2, min_per_class=1)
    train = pd.read_csv(folder / "train.csv", dtype=str)
    assert list(train.columns) == ["ID", "Label"] and len(train) == 40
    negative = [t for t in train["Label"] if "18" in t.split("|")]
    assert negative and all(t == "18" for t in negative), "Negative stands alone"
    sides = {Image.open(p).size for p in (folder / "train").glob("*_green.png")}
    assert sides == {(48, 48), (64, 64)}
    assert list(pd.read_csv(folder / "test_labels.csv").columns) == ["ID", "Label"]


def test_a_field_without_labels_has_only_unspecific_green():
    rng = np.random.default_rng(0)
    empty = render_field(set(), 64, rng, allow_empty=True)
    labelled = render_field({0}, 64, np.random.default_rng(0))
    assert np.percentile(empty[1], 99) < np.percentile(labelled[1], 99) / 2, "a faint haze, no pattern"

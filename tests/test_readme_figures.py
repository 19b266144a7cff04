"""docs/figures.py draws the README's pictures from a run; the committed ones stay small."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

SPEC = importlib.util.spec_from_file_location("figures", REPO / "docs/figures.py")
figures = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(figures)


@pytest.fixture
def run(tmp_path, rng):
    demo = tmp_path / "resources/demo"
    (demo / "train").mkdir(parents=True)
    (demo / "train.csv").write_text("Id,Target\na,0\nb,2 25\n")
    for image_id in ("a", "b"):
        for color in ("red", "green", "blue", "yellow"):
            plane = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            Image.fromarray(plane).save(demo / f"train/{image_id}_{color}.png")
    for name, honest in (("x", 0.4), ("y", 0.1)):
        record = {"honest_macro_f1": honest, "honest_macro_f1_interval": [honest - 0.03, honest + 0.03],
                  "no_skill_macro_f1": 0.11}
        (tmp_path / "results/thresholds").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"results/thresholds/{name}.json").write_text(json.dumps(record))
    (tmp_path / "results/evaluation").mkdir(parents=True)
    (tmp_path / "results/evaluation/x.json").write_text(json.dumps(
        {"test_macro_f1": 0.45, "test_macro_f1_interval": [0.4, 0.5], "test_no_skill_macro_f1": 0.1}))
    return tmp_path


def test_the_pictures_come_from_the_run(run):
    figures.main([str(run), "--out", str(run / "img")])
    field = Image.open(run / "img/demo_field.png")
    assert field.size[0] > 400 and (run / "img/scores.png").stat().st_size > 5000
    table = figures.scores(run)
    assert list(table["ensemble"]) == ["y", "x"] and table["test"].isna().tolist() == [True, False]


def test_the_composite_shows_each_stain_in_its_colour():
    planes = {c: np.zeros((2, 2)) for c in ("red", "green", "blue", "yellow")}
    planes["green"][0, 0] = 255
    planes["yellow"][1, 1] = 255
    rgb = figures.composite(planes)
    assert rgb[0, 0].tolist() == [0, 1, 0] and rgb[1, 1].tolist() == [0.5, 0.5, 0]


@pytest.mark.parametrize("name", ["demo_field.png", "scores.png"])
def test_the_committed_pictures_are_small_and_in_the_readme(name):
    path = REPO / "docs/img" / name
    assert path.stat().st_size < 300_000
    assert f"(docs/img/{name})" in (REPO / "README.md").read_text()

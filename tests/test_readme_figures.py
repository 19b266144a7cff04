"""docs/figures.py draws the README's pictures from a run; the committed ones stay small."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

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
    (tmp_path / "results/evaluation/comparison.csv").write_text(
        "ensemble,method,honest_macro_f1,honest_low,honest_high,oof_no_skill,test_macro_f1,test_low,test_high,"
        "test_no_skill,test_minus_best,minus_best_low,minus_best_high,train_s,predict_s\n"
        "x,per_class,0.4,0.37,0.43,0.11,0.45,0.4,0.5,0.1,0.0,0.0,0.0,10,2\n"
        "y,global,0.1,0.07,0.13,0.11,0.12,0.1,0.14,0.1,-0.33,-0.4,-0.25,5,1\n")
    (tmp_path / "results/data").mkdir()
    (tmp_path / "results/data/manifest.csv").write_text("Id,split,source\na,train,demo\nb,train,external\nt,test,demo\n")
    (tmp_path / "benchmarks/train").mkdir(parents=True)
    (tmp_path / "benchmarks/train/x_0.tsv").write_text("s\th:m:s\n12.5\t0:00:12\n")
    (tmp_path / "benchmarks/blend.tsv").write_text("s\th:m:s\n1.5\t0:00:01\n")
    (tmp_path / "logs/train/x").mkdir(parents=True)
    (tmp_path / "logs/train/x/fold0.log").write_text("... INFO hpa.runtime.device: precision: fp32 on cpu (amp: bf16)\n")
    (tmp_path / ".snakemake/log").mkdir(parents=True)
    (tmp_path / ".snakemake/log/2026-12-01T100000.snakemake.log").write_text(
        "[Tue Dec  1 10:00:00 2026]\nFinished job 1.\n[Tue Dec  1 10:05:30 2026]\nFinished job 0.\n")
    return tmp_path


def test_the_pictures_and_figures_come_from_the_run(run):
    page = run / "page.md"
    page.write_text("before\n<!-- figures:demo_scores -->\nstale\n<!-- /figures -->\nafter\n")
    figures.main([str(run), "--out", str(run / "img"), "--figures", str(run / "figures.json"), "--pages", str(page)])
    field = Image.open(run / "img/demo_field.png")
    assert field.size[0] > 400 and (run / "img/scores.png").stat().st_size > 5000
    table = figures.scores(run)
    assert list(table["ensemble"]) == ["y", "x"] and table["test"].isna().tolist() == [True, False]
    quoted = json.loads((run / "figures.json").read_text())["run"]
    assert quoted["wall_s"] == 330 and quoted["job_s"] == {"train": 12.5, "blend": 1.5}
    assert quoted["precision"] == ["fp32"] and quoted["images"] == {"train": 2, "train_external": 1, "test": 1}
    assert quoted["ensembles"]["y"]["test_minus_best"] == -0.33 and quoted["ensembles"]["x"]["method"] == "per_class"
    rewritten = page.read_text()
    assert "stale" not in rewritten and "| `x` | per_class | 0.400 [0.370, 0.430] | 0.450 [0.400, 0.500]" in rewritten
    assert rewritten.startswith("before\n") and rewritten.endswith("<!-- /figures -->\nafter\n")


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

"""The lab screen's silent failures (issue 29), through the real Snakefile: one test field exported at the
full 16-bit range, a class in the list with no image, a test row whose file is missing, a test row whose
files copy a training row's. The run names each (the word "clipped", the empty class, the copied pair),
scores only the kept test images, and the report command its summary prints works as printed after the
--configfile run."""

import copy
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import snakemake
from PIL import Image
from test_datasets import LAB

from hpa.demo.screen import LAB_CLASSES, make_screen

pytestmark = pytest.mark.workflow


def odd_screen(workdir, *, reject: bool = True, max_rejected: float = 0.1) -> tuple[str, str]:
    """The lab screen with its first test field at the full 16-bit range, (``reject``) its second
    test field's protein file gone, and its third test field's files copies of the first training
    field's; the lab config with a class "cilia" that no image holds."""
    sheet = make_screen(workdir / "screen", n_train=60, n_test=20, shape=(48, 64), seed=5, workers=2)
    rows = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    test = rows[rows["split"] == "test"]
    for stain in ("protein", "tubulin"):  # what some acquisition software writes: the full 16-bit range
        path = workdir / "screen" / test.iloc[0][stain]
        plane = np.asarray(Image.open(path)).astype(np.uint32) * 16
        Image.fromarray(np.minimum(plane, 65535).astype(np.uint16)).save(path)
    if reject:
        (workdir / "screen" / test.iloc[1]["protein"]).unlink()  # a test row ingest rejects
    train = rows[rows["split"] == "train"]
    for stain in ("dapi", "protein", "tubulin"):  # a test row whose files copy a training row's: a leak
        shutil.copyfile(workdir / "screen" / train.iloc[0][stain], workdir / "screen" / test.iloc[2][stain])
    config = copy.deepcopy(LAB)
    config["labels"]["names"] = [*LAB_CLASSES, "cilia"]  # listed, no image
    config["data"] = {"image_size": 32, "max_rejected_fraction": max_rejected}  # 0.1: 1 of 20 rejected, 1 clipped
    config["models"]["resnet18"] |= {"epochs": 1}
    config["cells"] = {"enabled": False}
    (workdir / "lab.yaml").write_text(yaml.safe_dump(config))
    return test["Id"].iloc[0], test["Id"].iloc[1]


@pytest.fixture(scope="module")
def odd_lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("odd_lab")
    full, gone = odd_screen(workdir)
    result = snakemake(workdir, configfile="lab.yaml")
    return workdir, result.stdout, result.stderr, full, gone


def test_more_clipped_images_than_max_rejected_fraction_stop_the_run_naming_the_keys(tmp_path):
    full, _ = odd_screen(tmp_path, reject=False, max_rejected=0.01)
    result = snakemake(tmp_path, configfile="lab.yaml", check=False)
    assert result.returncode != 0
    assert re.search(rf"test images: 1 of 20 images clipped .*e\.g\. {full} .*more than "
                     r"data\.max_rejected_fraction=0\.01.*data\.bit_depth\.rule: percentile", result.stderr)
    assert not (tmp_path / "results/data/clipped/test.csv").exists()
    assert f"clipped: {full} protein" in (tmp_path / "logs/cache_images/test.log").read_text()


def summary_of(stdout: str) -> str:
    lines = stdout.splitlines()
    return "\n".join(lines[max(i for i, line in enumerate(lines) if line.startswith("HPA run summary")):])


def test_the_full_range_field_is_listed_warned_and_named_clipped(odd_lab):
    workdir, stdout, stderr, full, _ = odd_lab
    clipped = pd.read_csv(workdir / "results/data/clipped/test.csv", dtype={"Id": str})
    assert set(clipped["Id"]) == {full} and set(clipped["channel"]) <= {"protein", "tubulin"}
    assert "images clipped by the bit-depth rule (over data.clipping" in stderr
    assert re.search(rf"Images clipped by the bit-depth rule \(test\): 1, e\.g\. {full} ", summary_of(stdout))


def test_the_class_with_no_image_is_named_and_scored_both_ways(odd_lab):
    workdir, stdout, stderr, _, _ = odd_lab
    assert "1 of 11 classes have no training image: cilia" in stderr
    text = summary_of(stdout)
    assert "Classes with no training image: cilia (1 of 11). Each macro F1 above averages all 11 classes" in text
    record = json.loads((workdir / "results/evaluation/resnet18.json").read_text())
    assert record["classes_without_training_images"] == ["cilia"]
    assert record["test_classes_with_images"]["n_classes"] == 10
    assert record["test_classes_with_images"]["macro_f1"] == pytest.approx(record["test_macro_f1"] * 11 / 10, abs=1e-5)
    page = (workdir / "results/report/scores.rst").read_text()  # the report's front page says which is which
    assert "Classes with no training image: cilia." in page and "resnet18: honest " in page


def test_the_rejected_test_row_is_in_no_score(odd_lab):
    workdir, stdout, _, _, gone = odd_lab
    record = json.loads((workdir / "results/evaluation/resnet18.json").read_text())
    manifest = pd.read_csv(workdir / "results/data/manifest.csv", dtype={"Id": str})
    kept = manifest[manifest["split"] == "test"]
    assert gone not in set(kept["Id"]) and record["n_test_images"] == len(kept) == 19
    assert gone not in set(pd.read_csv(workdir / "results/data/test_labels.csv", dtype={"Id": str})["Id"])
    assert "Images used: 60 train, 19 test" in summary_of(stdout)
    assert "on 19 test images" in summary_of(stdout)


def test_the_printed_report_command_works_as_printed(odd_lab):
    workdir, stdout, _, _, _ = odd_lab
    line = next(x for x in summary_of(stdout).splitlines() if x.startswith("Report: "))
    command, report = re.fullmatch(r"Report: (.*), then open (\S+) in a browser.*", line).groups()
    assert f"--configfile {workdir / 'lab.yaml'}" in command
    command = command.replace("snakemake", f"{sys.executable} -m snakemake", 1)
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "report.html").is_file() and report == str(workdir / "report.html")


def test_the_test_row_copying_a_training_row_is_named_a_leak(odd_lab):
    workdir, stdout, _, _, _ = odd_lab
    rows = pd.read_csv(workdir / "screen/samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    copy_id = rows[rows["split"] == "test"]["Id"].iloc[2]
    original = rows[rows["split"] == "train"]["Id"].iloc[0]
    leaks = pd.read_csv(workdir / "results/data/leaks.csv", dtype=str)
    assert (copy_id, original) in set(zip(leaks["test_id"], leaks["train_id"]))
    assert re.search(rf"Test leaks within the source: \d+ test images duplicate a training image \(.*{copy_id} ~ "
                     rf"{original}", summary_of(stdout))


def test_predict_new_on_the_labs_own_test_rows_as_a_sheet_equals_the_submission(odd_lab):
    """The lab's files as its sheet names them (plate folders, ``{id}-{plate}-{stain}.tif``), not the
    Kaggle layout: predict_new reads the sheet's test rows and classifies each as the submission did."""
    workdir, _, _, full, gone = odd_lab
    rows = pd.read_csv(workdir / "screen/samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet = workdir / "screen/new.tsv"
    rows[rows["split"] == "test"].drop(columns=["split", "Target"]).to_csv(sheet, sep="\t", index=False)
    snakemake(workdir, "results/new_images/resnet18.csv", "--config", f"new_images={sheet}", configfile="lab.yaml")
    table = pd.read_csv(workdir / "results/new_images/resnet18.csv", dtype={"Id": str}, keep_default_na=False)
    submission = pd.read_csv(workdir / "results/submission/resnet18.csv", dtype=str, keep_default_na=False)
    ok = table[table["ok"].astype(str) == "True"].set_index("Id")
    assert set(ok.index) == set(rows[rows["split"] == "test"]["Id"]) - {gone}
    assert table.set_index("Id").loc[gone, "reason"]  # the row whose file is gone is listed, with why
    expected = submission.set_index("Id").loc[ok.index, "Predicted"]
    assert ok["Predicted"].tolist() == expected.tolist() and expected.str.len().gt(0).sum() > len(expected) // 2
    assert ok.loc[full, "clipped"]  # the full-range field is clipped here too

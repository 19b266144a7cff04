"""The run's last words (hpa.postprocess.summary) on small fixture files."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from hpa.postprocess.summary import REJECTED, REPORT_COMMAND, Invocation, print_summary, reason_kind, summary


def write(root, path, content):
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_csv(target, index=False)
    else:
        target.write_text(json.dumps(content) if isinstance(content, dict) else content)


def thresholds(honest, low, high, no_skill):
    return {"method": "per_class", "oof_macro_f1": honest + 0.05, "honest_macro_f1": honest,
            "honest_macro_f1_interval": [low, high], "no_skill_macro_f1": no_skill}


@pytest.fixture
def run(tmp_path):
    """A finished run with two ensembles: "good" learned, "flat" sits at its no-skill line."""
    manifest = pd.DataFrame({"Id": [f"i{k}" for k in range(7)],
                             "split": ["train"] * 5 + ["test"] * 2,
                             "source": ["demo"] * 3 + ["external"] * 2 + ["demo"] * 2})
    write(tmp_path, "results/data/manifest.csv", manifest)
    write(tmp_path, REJECTED, pd.DataFrame({
        "Id": ["b1", "b2", "b3"], "source": "demo", "split": ["train", "train", "test"],
        "reason": ["missing channel yellow (no b1_yellow file with any of .png/.tif)",
                   "unreadable channel red: /data/train/b2_red.png (truncated)",
                   "missing channel red, blue (no b3_red file with any of .png/.tif)"]}))
    write(tmp_path, "results/thresholds/good.json", thresholds(0.478, 0.450, 0.500, 0.108))
    write(tmp_path, "results/thresholds/flat.json", thresholds(0.105, 0.090, 0.121, 0.108))
    write(tmp_path, "results/evaluation/good.json", {
        "test_macro_f1": 0.444, "test_macro_f1_interval": [0.399, 0.475], "test_no_skill_macro_f1": 0.109})
    for name in ("good", "flat"):
        write(tmp_path, f"results/submission/{name}.csv", "Id,Predicted\nt1,0\n")
    return tmp_path


def test_a_normal_run_says_what_was_used_scored_and_written(run):
    text = summary(run, ["good"])
    assert "Images used: 5 train (3 demo, 2 external), 2 test" in text
    assert f"Images rejected: 3 (2 train, 1 test): 2 missing channel, 1 unreadable channel; each with its " \
           f"reason in {REJECTED}" in text
    assert "good  honest 0.478 [0.450, 0.500] vs no-skill 0.108; test 0.444 [0.399, 0.475] vs no-skill 0.109" in text
    assert "NO EVIDENCE" not in text
    assert "Submission: results/submission/good.csv" in text
    assert f"Report: {REPORT_COMMAND}, then open report.html" in text
    assert text.splitlines()[-1].startswith("=====")


def test_masks_that_look_wrong_are_counted(run):
    images = pd.DataFrame({"Id": ["t1", "t2", "t3"], "width": 64, "height": 64, "cells": [3, 4, 5],
                           "nucleus_radius": 5.0, "small_cells": [0, 1, 0], "holey_cells": [0, 0, 2],
                           "border_cells": [2, 2, 2], "problem": ""})
    write(run, "results/cells/images.csv", images)
    assert "2 of 3 masks look wrong" in summary(run, ["good"])
    write(run, "results/cells/images.csv", images.assign(small_cells=0, holey_cells=0))
    assert "look wrong" not in summary(run, ["good"])


def test_a_model_at_no_skill_gets_the_loud_line(run):
    text = summary(run, ["good", "flat"])
    warnings = [line for line in text.splitlines() if "NO EVIDENCE OF LEARNING" in line]
    assert len(warnings) == 1 and "flat's honest macro F1 0.105 [0.090, 0.121]" in warnings[0]
    assert "no-skill line 0.108" in warnings[0]
    assert "(best honest F1: results/submission/good.csv)" in text


def test_a_test_interval_at_no_skill_is_flagged_too(run):
    write(run, "results/evaluation/good.json", {
        "test_macro_f1": 0.12, "test_macro_f1_interval": [0.10, 0.14], "test_no_skill_macro_f1": 0.109})
    warnings = [line for line in summary(run, ["good"]).splitlines() if "NO EVIDENCE" in line]
    assert len(warnings) == 1 and "good's test macro F1 0.120" in warnings[0]


def test_a_run_of_one_stage_reads_only_what_exists(tmp_path):
    write(tmp_path, REJECTED, "Id,source,split,reason\n")
    text = summary(tmp_path, ["good"])
    assert f"Images rejected: none ({REJECTED})" in text
    assert "Macro F1" not in text and "Submission" not in text and REPORT_COMMAND in text


def test_a_failed_run_says_so_and_names_the_log(run):
    text = summary(run, ["good"], failed=True, log=[".snakemake/log/x.log"])
    assert "the run FAILED" in text.splitlines()[1] and "Snakemake's log: .snakemake/log/x.log)" in text


def test_unreadable_files_never_fail_the_run(run, capsys):
    write(run, "results/thresholds/good.json", "{not json")
    print_summary(run, ["good"])
    assert capsys.readouterr().out.startswith("(no run summary: JSONDecodeError")


def test_external_cleaning_and_leaks_are_counted(run):
    write(run, "results/external/report.json", {
        "list": 80, "kept": 60, "dropped": {"missing": 2, "blank": 0, "duplicate_of_test": 4}})
    line = next(x for x in summary(run, ["good"]).splitlines() if x.startswith("External images"))
    assert line == ("External images: 60 of 80 kept; dropped 4 duplicate_of_test, 2 missing "
                    "(results/external/cleaning.csv, test leaks in results/external/leaks.csv)")


@pytest.mark.parametrize("reason, kind", [
    ("channel green has 2 files (a_green.png, a_green.tif); keep one", "two files for one channel"),
    ("channel red is (512, 512), the others are (256, 256): x.png", "channels of different sizes"),
    ("channel blue has mode P, expected grey (8 or 16-bit) or RGB: x.png", "not a grey or RGB image"),
    ("something new: x.png", "something new"),
])
def test_reason_kinds(reason, kind):
    assert reason_kind(reason) == kind


def test_the_snakefile_can_import_it_without_torch():
    code = "import sys, hpa.postprocess.summary; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.workflow
def test_the_demo_run_ends_with_the_summary(demo_run):
    """The real Snakefile's onsuccess prints it last, with the tiny run's images and honest score."""
    lines = (demo_run / "terminal.txt").read_text().rstrip("\n").splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("HPA run summary"))
    assert lines[-1].startswith("=====") and "FAILED" not in lines[start]
    block = "\n".join(lines[start:])
    manifest = pd.read_csv(demo_run / "results/data/manifest.csv")
    external = (manifest["source"] == "external").sum()
    assert f"Images used: {36 + external} train (36 demo, {external} external), 12 test" in block
    record = json.loads((demo_run / "results/thresholds/main.json").read_text())
    assert f"main  honest {record['honest_macro_f1']:.3f}" in block and "Submission: results/submission/main.csv" in block


def test_the_report_line_carries_the_runs_configfile(run, tmp_path):
    """Run from the repository's folder: paths relative to it; from elsewhere: absolute, with --directory."""
    repo = tmp_path / "repo"
    at_home = Invocation(configfiles=(str(repo / "config/screen.yaml"),), directory=str(repo),
                         snakefile=str(repo / "Snakefile"))
    text = summary(run, ["good"], invocation=at_home)
    assert "Report: snakemake --report report.html --configfile config/screen.yaml, then open report.html" in text
    moved = Invocation(configfiles=("/lab/screen.yaml",), directory="/scratch/run", snakefile=str(repo / "Snakefile"))
    assert (f"Report: snakemake --report report.html --snakefile {repo / 'Snakefile'} --directory /scratch/run "
            "--configfile /lab/screen.yaml, then open /scratch/run/report.html") in summary(run, ["good"], invocation=moved)

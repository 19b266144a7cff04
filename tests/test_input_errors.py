"""Bad input reaches the user as its message: no Python traceback, and for a stop over broken
images, the list of them kept where the user can read it."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import snakemake, write_kaggle_source
from PIL import Image


def uncaught(tmp_path, raise_line: str) -> tuple[subprocess.CompletedProcess, str]:
    """A script that sets up logging as the rule scripts do and raises; its stderr and log."""
    log = tmp_path / "job.log"
    code = f"from hpa.files import setup_logging\nsetup_logging({str(log)!r})\n{raise_line}\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return result, log.read_text()


def test_an_input_error_is_shown_as_its_message_alone(tmp_path):
    result, log = uncaught(tmp_path, "from hpa.tables import InputError\n"
                                     "raise InputError('train.csv, line 3 (Id a2): Target is not integers')")
    assert result.returncode == 1
    assert result.stderr == "InputError: train.csv, line 3 (Id a2): Target is not integers\n"
    assert "Target is not integers" in log and "Traceback" not in log


def test_any_other_error_keeps_its_traceback(tmp_path):
    result, log = uncaught(tmp_path, "raise RuntimeError('a bug')")
    assert result.returncode == 1 and "Traceback" in result.stderr and "Traceback" in log


@pytest.mark.workflow
def test_a_stop_for_broken_images_prints_the_kinds_and_keeps_the_list(tmp_path):
    """Snakemake removes a failed job's outputs: the list survives as the ingest rule's log."""
    source = write_kaggle_source(tmp_path / "src", {"a1": "0", "a2": "1 2", "a3": "5"}, ["t1", "t2", "t3", "t4"])
    (source / "test/t1_blue.png").unlink()
    for image_id in ("t2", "t3"):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(source / "test" / f"{image_id}_red.png")
    config = {"source": "kaggle", "kaggle": {"dir": "src"}, "models": {"m": {}}, "ensembles": {"e": {"models": ["m"]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/data/manifest.csv", check=False)
    terminal = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in terminal
    assert "src/test: 3 of 4 test images are unusable" in terminal
    assert "all are listed in logs/ingest_rejected.csv" in terminal
    assert "2 with channels of different sizes, e.g. t2" in terminal and "1 missing a channel, e.g. t1" in terminal
    rejected = pd.read_csv(tmp_path / "logs/ingest_rejected.csv")
    assert sorted(rejected["Id"]) == ["t1", "t2", "t3"] and set(rejected["kind"]) == {"missing", "size"}

"""The scale and GPU benchmarks run end to end at a tiny size and print every figure they promise."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO

from bench import scale, scale_data, scale_stages
from bench.scale_stages import STAGES


def run_bench(tmp_path, *args):
    """``python -m bench ARGS`` from tmp_path (results/benchmarks/ lands there); its stdout."""
    scripts = REPO / "workflow" / "scripts"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(scripts), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_split_sizes_follow_the_real_proportions():
    assert scale_data.split_sizes("real") == {"train": 31_072, "test": 11_702, "external": 74_606}
    sizes = scale_data.split_sizes(10_000)
    assert sum(sizes.values()) == 10_000
    assert sizes == {"train": 2647, "test": 997, "external": 6356}


def test_growth_flags_a_stage_faster_than_n_log_n():
    def run(images, seconds):
        return {"images": images, "stages": {"linear": {"cpu_seconds": seconds}, "quadratic": {"cpu_seconds": seconds}}}

    small, large = run(10_000, 1.0), run(100_000, 10.0)
    large["stages"]["quadratic"]["cpu_seconds"] = 100.0
    grew = scale.growth(small, large)
    assert grew["linear"]["holds"] and not grew["quadratic"]["holds"]
    assert grew["linear"]["nlogn_ratio"] == pytest.approx(12.5, abs=0.01)


def test_generated_images_are_links_into_a_pool_of_distinct_planes(tmp_path):
    layout = scale_data.Layout(tmp_path)
    scale_data.write_dataset(layout, 200)
    train = (layout.kaggle / "train.csv").read_text().splitlines()
    assert train[0] == "Id,Target" and len(train) == 1 + scale_data.split_sizes(200)["train"]
    first_id = train[1].split(",")[0]
    assert (layout.kaggle / "train" / f"{first_id}_green.png").stat().st_nlink > 1
    records = (layout.external / "download.csv").read_text().splitlines()
    assert len(records) == 1 + scale_data.split_sizes(200)["external"]


def test_scale_benchmark_runs_every_stage(tmp_path):
    out = run_bench(tmp_path, "scale", "--n", "200", "--threads", "1")
    for stage in STAGES:
        assert f"[scale] N=200 {stage}: " in out, stage
    assert "whole run" in out and "peak" in out
    record = json.loads((tmp_path / "results/benchmarks/scale.json").read_text())
    stages = record["runs"][0]["stages"]
    assert list(stages) == list(STAGES)
    assert all(fig["seconds"] > 0 and fig["peak_mb"] > 10 for fig in stages.values())


def parsed_workflow():
    """The workflow as Snakemake parses it with the recipe the scale bench uses (config/hpa.yaml)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet=set())) as api:
        return api.workflow(resource_settings=ResourceSettings(), snakefile=REPO / "Snakefile", workdir=REPO,
                            config_settings=ConfigSettings(configfiles=[REPO / "config/hpa.yaml"]))._workflow


def declared_names(rule, part: str, wildcards: dict) -> set:
    """A rule's input/output/params/log names; an unpack()ed input function's too, called for the job's wildcards."""
    names = set(getattr(rule, part)._names)
    if part == "input":
        for item in rule.input:
            if (getattr(item, "flags", None) or {}).get("unpack"):  # an _IOFile around the input function
                names |= set(item._file.callable(SimpleNamespace(**wildcards)))
    return names


def test_scale_stages_run_each_rules_own_script_with_its_declared_names():
    """A renamed, added or removed input, output, param or log of a benched rule, or a moved script,
    fails here rather than the bench measuring something else."""
    workflow = parsed_workflow()
    for stage, spec in scale_stages.jobs(scale_data.Layout(Path("/scale"))).items():
        rule = workflow.get_rule(spec["rule"])
        assert Path(rule.snakefile).parent.joinpath(rule.script).resolve() == scale_stages.script(spec), stage
        for part in ("input", "output", "params", "log"):
            assert set(spec[part]) - {""} == declared_names(rule, part, spec["wildcards"]), (stage, part)


def test_stand_in_refuses_a_name_the_job_does_not_declare():
    snakemake = scale_stages.stand_in(scale_stages.job("x", {"index": Path("/a")}, {}, log={}), threads=1)
    assert snakemake.input.index == "/a" and snakemake.input[0] == "/a" and snakemake.input["index"] == "/a"
    with pytest.raises(AttributeError, match="declares no 'manifest'"):
        getattr(snakemake.input, "manifest")  # noqa: B009 (the attribute access is the test)


def test_gpu_benchmark_runs_on_a_cpu_at_tiny_size(tmp_path):
    out = run_bench(tmp_path, "gpu", "--archs", "resnet34", "--size", "32", "--steps", "2", "--batch", "4",
                    "--images", "8", "--tta-images", "8", "--compile", "off")
    assert "[gpu] resnet34 compile=off batch 4: bare " in out
    for field in ("images/s", "step", "data wait", "ops/step", "blocking copies/step", "TTA x8", "peak GPU memory"):
        assert field in out, field
    (result,) = json.loads((tmp_path / "results/benchmarks/gpu.json").read_text())["results"]
    assert result["train_images_per_s"] > 0 and result["tta_images_per_s"] > 0
    assert 0 <= result["data_wait_fraction"] < 1
    assert result["batch_size"] == 4 and result["compile"] is False
    assert result["bare_images_per_s"] > 0 and result["step_vs_bare"] > 0 and result["tta_vs_bare"] > 0
    assert result["device_ops_per_step"] <= 1.5 * result["bare_device_ops_per_step"]
    assert result["blocking_copies_per_step"] == 0 and result["holds"] is True

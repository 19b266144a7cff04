"""The workflow submitted to a real Slurm through profiles/slurm.

The cluster is one node on this machine, on loopback (tests/slurm/slurm-local.sh: Debian's
slurm-wlm, munge, slurmdbd + MariaDB so that sacct works, two stand-in GPUs, 8 CPUs advertised:
smaller than the real data's requests, and a size sites have). It needs root and
apt; elsewhere the tests skip, saying why, unless HPA_REQUIRE_SLURM=1 (CI), which makes that a
failure. Daemons this fixture started are stopped by PID at the end of the session.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from conftest import REPO, TINY, job_counts, snakemake, write_kaggle_source

pytestmark = pytest.mark.workflow

SCRIPT = REPO / "tests/slurm/slurm-local.sh"
PROFILE = REPO / "profiles/slurm/config.yaml"
RUN_TIMEOUT = 900  # s; the tiny demo takes ~5 min: 25 jobs, each ~10 s of Snakemake start-up and polling
# Equal to a local run at the same thread counts: CPU training and inference are seeded and deterministic.
# Inside each Slurm job Snakemake runs with --cores all, so a job that was given 8 CPUs of the
# stand-in node runs on the 2 this machine has, like the local run (demo_run, --cores 2).
SAME_AS_LOCAL = [
    "results/data/manifest.csv", "results/cache/stats.json", "results/splits/folds.csv",
    *(f"results/predictions/tiny/fold{k}/flips_mean/{kind}.csv" for k in (0, 1) for kind in ("oof", "test")),
    "results/ensembles/main/oof.csv", "results/ensembles/main/test.csv",
    "results/thresholds/main.json", "results/submission/main.csv", "results/evaluation/main.json",
]
NODE_CPUS = 8  # what the profile's max-threads declares, and the local node advertises
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def rule_blocks():
    """{rule name: its text} over workflow/rules/*.smk."""
    text = "\n".join(smk.read_text() for smk in sorted((REPO / "workflow/rules").glob("*.smk")))
    return {m.group(1): m.group(0) for m in re.finditer(r"^rule (\w+):\n(?:[ \t]+.*\n|\n)*", text, re.M)}


def test_rules_size_every_gpu_job_and_the_profile_names_only_real_rules():
    profile = yaml.safe_load(PROFILE.read_text())
    rules = rule_blocks()
    gpu_rules = {name for name, block in rules.items() if re.search(r"^\s+(gpu=|\*\*gpu_resources\()", block, re.M)}
    assert {"train", "predict"} <= gpu_rules
    assert set(profile.get("set-resources") or {}) | set(profile["set-threads"]) <= set(rules)
    for rule in gpu_rules:
        # Sized by the rule (from its inputs and the attempt), not by a fixed number in the profile.
        assert re.search(r"^\s+mem_mb=", rules[rule], re.M) and re.search(r"^\s+runtime=", rules[rule], re.M), rule
        assert rule in profile["set-threads"], rule
    # One declared node size caps every thread request; no global gpu limit (profiles/default's).
    assert profile["max-threads"] == NODE_CPUS < max(profile["set-threads"].values())
    assert "resources" not in profile and profile["executor"] == "slurm"


def planned_train_resources(workdir, *args):
    """resources: of the train job a dry run through profiles/slurm plans, as {name: value}."""
    out = snakemake(workdir, "-n", "--workflow-profile", str(PROFILE.parent), "--allowed-rules", "train",
                    "--cores", "64", *args, "results/models/tiny/fold0/model.pt")
    line = re.search(r"^\s+resources: (.+)$", out.stdout + out.stderr, re.M).group(1)
    return dict(pair.split("=", 1) for pair in line.split(", "))


def test_training_memory_and_time_follow_the_cache_and_the_attempt(tmp_path):
    """The demo's cache asks for a small node's share, the real recipe's for a large node, a retry for more."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    inputs = ["results/cache/train.npy", "results/cache/train.csv", "results/cache/stats.json",
              "results/splits/folds.csv", "results/data/manifest.csv", "results/data/vocabulary.json"]
    for path in inputs:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    small = planned_train_resources(tmp_path)
    os.truncate(tmp_path / "results/cache/train.npy", 100 * 2**30)  # sparse: the real cache's size
    large = planned_train_resources(tmp_path)
    retried = planned_train_resources(tmp_path, "--attempt", "2")
    assert int(small["mem_mb"]) <= 8000 and int(small["runtime"]) <= 60
    assert 24000 <= int(large["mem_mb"]) <= 40000 and int(large["runtime"]) > int(small["runtime"])
    assert (int(retried["mem_mb"]), int(retried["runtime"])) == (2 * int(large["mem_mb"]), 2 * int(large["runtime"]))


def unavailable(reason):
    if os.environ.get("HPA_REQUIRE_SLURM") == "1":
        pytest.fail(f"HPA_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


def cluster(action, timeout=900):
    env = dict(os.environ, SLURM_LOCAL_CPUS=str(NODE_CPUS))
    return subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def slurm_cluster():
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        unavailable('snakemake-executor-plugin-slurm is not installed (pip install -e ".[slurm]")')
    if sys.platform != "linux" or os.geteuid() != 0:
        unavailable("a local Slurm needs Linux and root (tests/slurm/slurm-local.sh installs and starts it)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        unavailable("Slurm is not installed and there is no apt-get to install it")
    already_up = cluster("status", timeout=60).returncode == 0
    started = cluster("start")
    if started.returncode != 0:
        why = {3: "its packages cannot be installed", 4: "the daemons did not come up"}.get(started.returncode, "")
        unavailable(f"local Slurm unavailable, {why} (slurm-local.sh exit {started.returncode}): "
                    f"{started.stderr.strip().splitlines()[-1:]}")
    yield
    if not already_up:
        cluster("stop", timeout=300)


def ci_profile(directory):
    """profiles/slurm with its sizes as shipped, polled fast for seconds-long jobs, without account lookup."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile.update({"latency-wait": 5, "slurm-init-seconds-before-status-checks": 2, "slurm-no-account": True})
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def submit(workdir, *targets):
    """Snakemake on Slurm, bounded: a hung run is killed, its jobs cancelled and the directory unlocked."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(ci_profile(workdir / "profile")),
           *targets]
    result = subprocess.run(["timeout", "-k", "10", str(RUN_TIMEOUT), *cmd], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT + 60)
    output = result.stdout + result.stderr
    if result.returncode in (124, 137):
        subprocess.run(["scancel", *(job for job, _ in SUBMITTED.findall(output))], capture_output=True)
        subprocess.run([*cmd, "--unlock"], capture_output=True, timeout=120)
        raise AssertionError(f"Snakemake on Slurm still running after {RUN_TIMEOUT}s:\n{output[-5000:]}")
    return result.returncode, output


def slurm_records(job_ids):
    """Slurm's own accounting of the jobs: {id: {field: value}}; waits for slurmdbd to catch up."""
    fields = ["JobID", "Comment", "State", "WorkDir", "SubmitLine", "ReqTRES", "NCPUS"]
    for _ in range(60):
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", ",".join(fields)],
                             capture_output=True, text=True, check=True).stdout
        records = {row["JobID"]: row for row in (dict(zip(fields, line.split("|"))) for line in out.splitlines())}
        if set(records) == set(job_ids) and all(r["State"] not in ("PENDING", "RUNNING") for r in records.values()):
            return records
        time.sleep(1)
    raise AssertionError(f"sacct has no final record of every job {job_ids}:\n{out}")


def rule_of(comment):
    """The rule name the slurm plugin wrote into the job's comment (rule_<name>[_wildcards_<...>])."""
    return re.fullmatch(r"rule_(\w+?)(_wildcards_.*)?", comment).group(1)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_run")
    # Node-local scratch stands in as a folder of its own: the GPU jobs read their copies of the cache.
    (workdir / "config.yaml").write_text(yaml.safe_dump(dict(TINY, scratch=str(workdir / "node_scratch"))))
    start = time.monotonic()
    returncode, output = submit(workdir)
    wall = time.monotonic() - start
    assert returncode == 0, output[-6000:]
    jobs = dict(SUBMITTED.findall(output))
    records = slurm_records(list(jobs))
    print(f"\nSlurm run of the tiny demo: {wall:.0f} s wall, {len(jobs)} jobs submitted")
    for job_id, record in sorted(records.items(), key=lambda item: int(item[0])):
        print(f"  {job_id:>6}  {record['Comment']:<55} {record['State']:<10} {record['ReqTRES']}")
    return workdir, output, records


def local_rules():
    """The rules the Snakefile's localrules: keeps out of sbatch."""
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", (REPO / "Snakefile").read_text(), re.M).group(1)
    return set(re.findall(r"\w+", block))


def test_every_job_but_the_local_rules_went_through_sbatch(slurm_run):
    workdir, output, records = slurm_run
    planned = job_counts(output)
    for record in records.values():
        assert record["State"] == "COMPLETED" and record["WorkDir"] == str(workdir), record
        assert record["SubmitLine"].startswith("sbatch "), record
    submitted = Counter(rule_of(record["Comment"]) for record in records.values())
    assert submitted == Counter({rule: n for rule, n in planned.items() if rule not in local_rules()})
    assert {"make_folds", "blend", "fit_thresholds", "make_submission"} <= set(planned) & local_rules()
    assert planned["train"] == TINY["folds"]["n"] and not set(submitted) & local_rules()


def test_gpu_rules_ask_slurm_for_a_gpu_and_no_job_for_more_cpus_than_the_node_has(slurm_run):
    _, _, records = slurm_run
    by_rule = {}
    for record in records.values():
        by_rule.setdefault(rule_of(record["Comment"]), []).append(record)
    for rule in ("train", "predict"):
        for record in by_rule[rule]:
            assert "gres/gpu=1" in record["ReqTRES"] and record["NCPUS"] == str(NODE_CPUS), record
    for rule in ("make_demo", "ingest", "cache_images"):
        assert "gres/gpu" not in by_rule[rule][0]["ReqTRES"], by_rule[rule]
    # cache_images asks for 16 (set-threads); the profile's max-threads brings it down to the node.
    assert {record["NCPUS"] for record in by_rule["cache_images"]} == {str(NODE_CPUS)}


def test_outputs_match_a_local_run(slurm_run, demo_run):
    workdir, _, _ = slurm_run
    staged = {p.name for p in (workdir / "node_scratch/hpa-cache").glob("*/*.npy")}
    assert staged == {"train.npy", "test.npy"}  # read from there, and still the same numbers
    for path in SAME_AS_LOCAL:
        assert (workdir / path).read_bytes() == (demo_run / path).read_bytes(), path


def failed_jobs(output):
    """(rule, Slurm job id, log paths) of every "Error in rule" report in Snakemake's output."""
    return [(rule, job_id, logs.split(", ")) for rule, job_id, logs in re.findall(
        r"Error in rule (\w+):\n\s+message: SLURM-job '(\d+)' failed.*?\n\s+log: (.+?) \(check log", output, re.S)]


def test_a_failing_job_fails_the_workflow_naming_its_slurm_log(slurm_cluster, tmp_path):
    write_kaggle_source(tmp_path / "resources/kaggle", {"a": "0", "b": "31"}, ["t"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(TINY, source="kaggle")))
    returncode, output = submit(tmp_path, "results/data/manifest.csv")
    assert returncode == 1, output[-5000:]
    failed = failed_jobs(output)
    assert failed, output[-5000:]
    records = slurm_records([job_id for _, job_id, _ in failed])
    for rule, job_id, logs in failed:
        assert records[job_id]["State"] == "FAILED", records[job_id]
        rule_log, slurm_log = logs
        assert re.search(rf"/\.snakemake/slurm_logs/rule_{rule}/(.+/)?{job_id}\.log$", slurm_log), slurm_log
        assert f"Error in rule {rule}" in (tmp_path / slurm_log).read_text()
    # The label check names the bad line, whichever rule read the labels first.
    message = "train.csv, line 3 (Id b): Target '31': '31' is neither a class name nor an index 0..27"
    assert any(message in (tmp_path / logs[0]).read_text()
               for _, _, logs in failed)

"""The README's quick start is what CI runs."""

import re

from conftest import REPO


def quick_start_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    demo, tests = quick_start_commands()
    assert "snakemake --cores" in demo and demo.startswith("pip install -e .")
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert tests in ci, f".ci/run must run the README's test command: {tests}"

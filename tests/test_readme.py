"""The README's quick start is what CI runs."""

import re

from conftest import REPO


def quick_start_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_runs_the_demo_opens_the_report_and_ci_runs_the_tests():
    commands = quick_start_commands()
    demo = next(c for c in commands if c.startswith("pip install -e . &&"))
    tests = next(c for c in commands if "pytest" in c)
    assert "snakemake --cores" in demo and commands.index(demo) == 0
    assert "snakemake --report report.html" in commands[commands.index(demo) + 1]
    ci = (REPO / ".ci/run").read_text().splitlines()
    assert tests in ci, f".ci/run must run the README's test command: {tests}"

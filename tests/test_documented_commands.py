"""Every `snakemake ...` command that README.md, docs/*.md and config/README.md show works as written.

The commands are found in the documents themselves (fenced blocks and inline code), so a new
or reworded command is tested without touching this file. Each is dry-run (-n) in a copy of
the working tree, with the Kaggle files it would read faked as empty stand-ins; the two kinds
that a dry run cannot check are in EXCEPTIONS, each with its reason."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from hpa.demo.screen import make_screen

DOCUMENTS = ["README.md", "config/README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SEPARATORS = {"&&", "||", ";", "|", "&"}
# Words that stand for the reader's own: "snakemake --configfile config/hpa.yaml ..." (any
# target), "--config key=value" (any key); dropped. A {model}/{ensemble}/{fold} in a path is
# filled with the demo config's first.
PLACEHOLDERS = {"...", "key=value"}
DEMO = yaml.safe_load((REPO / "config/config.yaml").read_text())
WILDCARDS = {"model": next(iter(DEMO["models"])), "ensemble": next(iter(DEMO["ensembles"])), "fold": "0"}


def code_spans(markdown: str) -> list[str]:
    """Each line of the fenced code blocks (backslash continuations joined), then each inline code span."""
    spans = []
    fenced = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n(.*?)^ {0,3}\1[ \t]*$", re.S | re.M)
    for block in fenced.finditer(markdown):
        spans += [line.strip().removeprefix("$ ") for line in block[2].replace("\\\n", " ").splitlines()]
    prose = fenced.sub("", markdown)
    spans += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)
    return spans


def snakemake_commands(line: str) -> list[list[str]]:
    """The snakemake commands in one shell line, as argument lists (comments dropped). A bare
    `--config k=v` fragment is the option of a plain `snakemake` run."""
    if line.startswith("--config "):
        line = "snakemake " + line
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: prose, not a command
        return []
    commands, current = [], []
    for token in tokens + [";"]:
        if token in SEPARATORS:
            command = [re.sub(r"\{(model|ensemble|fold)\}", lambda m: WILDCARDS[m[1]], t)
                       for t in current if t not in PLACEHOLDERS]
            if command[-1:] == ["--config"]:
                command.pop()
            if command[:1] == ["snakemake"] and len(command) > 1:
                commands.append(command)
            current = []
        else:
            current.append(token)
    return commands


def documented_commands() -> list[tuple[str, list[str]]]:
    found = {}
    for document in DOCUMENTS:
        for span in code_spans((REPO / document).read_text()):
            for command in snakemake_commands(span):
                found.setdefault(shlex.join(command), document)
    return [(document, shlex.split(command)) for command, document in found.items()]


# What a dry run cannot show, by the flag that needs it (keep this short).
EXCEPTIONS = {
    # builds the report from a finished run's files: run after the tiny demo instead (below)
    "--report": "needs a finished run",
    # asks conda for its environments, with or without -n: tested only where conda is installed
    "--use-conda": "needs conda",
}


def fake_inputs(root: Path, command: list[str]):
    """Empty stand-ins for what a command's dry run looks for but the repository cannot ship:
    the competition's files (config/hpa*.yaml), the atlas list, a --config new_images folder,
    the worked example's sample sheet, and a config file of the reader's own (path/to/...)."""
    kaggle = root / "resources/kaggle"
    for folder in ("train", "test", "train_full_size", "test_full_size"):
        (kaggle / folder).mkdir(parents=True, exist_ok=True)
    (kaggle / "train.csv").write_text("Id,Target\nfake,0\n")
    (kaggle / "sample_submission.csv").write_text("Id,Predicted\nfake_test,0\n")
    (root / "resources/external").mkdir(parents=True, exist_ok=True)
    (root / "resources/external/HPAv18RBGY_wodpl.csv").write_text("Id,Target\nfake_1,0\n")
    # A config the reader writes (`--configfile path/to/your_config.yaml`): the demo's stands in.
    for given in (b for a, b in zip(command, command[1:]) if a == "--configfile" and b.startswith("path/to/")):
        (root / given).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / "config/config.yaml", root / given)
    # The README's worked example of a lab's screen: its sheet, as `python -m hpa.demo.screen` writes it.
    if "config/screen.yaml" in command:
        make_screen(root / "resources/screen", n_train=12, n_test=4, shape=(24, 32), min_per_class=1)
    new_images = [arg.split("=", 1)[1] for arg in command if arg.startswith("new_images=")]
    for folder in new_images or [DEMO.get("new_images", "resources/new_images")]:
        (root / folder).mkdir(parents=True, exist_ok=True)


def working_tree_copy(dest: Path) -> Path:
    """The files git tracks or would track (no results, no venv), as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def run(command: list[str], cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "snakemake", *command[1:], *extra]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)


COMMANDS = documented_commands()


def test_the_documents_show_commands_to_test():
    """Guards the extractor: the documents do show snakemake commands, in blocks and inline."""
    assert len(COMMANDS) >= 5, COMMANDS
    assert any("--configfile" in c for _, c in COMMANDS) and any("--config" in c for _, c in COMMANDS)


def test_the_extractor_reads_blocks_inline_code_chains_comments_and_placeholders():
    markdown = ("Run `snakemake --cores 2 --config a=1` or\n```bash\npip install -e . && snakemake \\\n"
                "  --cores all   # the demo\nsnakemake --configfile x.yaml ... results/{ensemble}.csv\n```\n"
                "not `snakemake`; `--config key=value`, `--config 'scratch=$TMPDIR'`.\n")
    commands = [c for span in code_spans(markdown) for c in snakemake_commands(span)]
    assert commands == [["snakemake", "--cores", "all"],
                        ["snakemake", "--configfile", "x.yaml", f"results/{WILDCARDS['ensemble']}.csv"],
                        ["snakemake", "--cores", "2", "--config", "a=1"], ["snakemake", "--config", "scratch=$TMPDIR"]]


@pytest.mark.workflow  # about 8 s a command on 2 cores: Snakemake plans the whole demo
@pytest.mark.parametrize("document,command", COMMANDS, ids=[shlex.join(c) for _, c in COMMANDS])
def test_a_documented_command_dry_runs(document, command, tmp_path):
    reasons = [reason for flag, reason in EXCEPTIONS.items() if flag in command]
    if "needs conda" in reasons and not (shutil.which("conda") or shutil.which("mamba")):
        pytest.skip("--use-conda needs conda, which this machine lacks")
    if "needs a finished run" in reasons:
        pytest.skip("tested after the demo: test_the_documented_report_command_builds_the_report")
    root = working_tree_copy(tmp_path / "repo")
    fake_inputs(root, command)
    result = run(command, root, "-n")
    assert result.returncode == 0, (f"{document}: `{shlex.join(command)}` fails as written:\n"
                                    f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


REPORTS = [(document, command) for document, command in COMMANDS if "--report" in command]


@pytest.mark.workflow
@pytest.mark.parametrize("document,command", REPORTS, ids=[shlex.join(c) for _, c in REPORTS])
def test_a_documented_report_command_builds_the_report_after_the_demo(document, command, demo_run, tmp_path):
    """The report needs a finished run: the tiny demo's (its config passed as the run's own)."""
    finished = shutil.copytree(demo_run, tmp_path / "run", symlinks=True)
    result = run([*command, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"], finished)
    assert result.returncode == 0, f"{document}: `{shlex.join(command)}` fails after the demo:\n{result.stderr[-3000:]}"
    assert (finished / ("report.html" if command[-1] == "--report" else command[-1])).stat().st_size > 100_000

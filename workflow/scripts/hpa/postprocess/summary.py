"""The run's last words: a short summary on the terminal when the workflow ends.

Called by the Snakefile's ``onsuccess``/``onerror`` handlers (workflow/rules/summary.smk),
so it runs in the Snakemake process itself: torch-free, and it reads only the files that
exist, since a run of one target (or one that stopped early) may have written few of them.
It says what a user would otherwise find only in the logs: images left out and why, each
ensemble's honest score against the no-skill line (loudly when it does not clear it), and
where the submission and the report are.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hpa.cells.segment_job import flagged

MANIFEST = "results/data/manifest.csv"
VOCABULARY = "results/data/vocabulary.json"
CLIPPED = "results/data/clipped"
BIT_DEPTH = "results/cache/bit_depth.json"
REJECTED = "results/data/rejected.csv"
LEAKS = "results/data/leaks.csv"
DUPLICATES = "results/data/duplicates.csv"
EXTERNAL_REPORT = "results/external/report.json"
REPORT = "report.html"
REPORT_COMMAND = f"snakemake --report {REPORT}"


@dataclass(frozen=True)
class Invocation:
    """How the run was started, so that a command the summary prints reruns against the same config.

    ``configfiles``: the --configfile files (absolute, as Snakemake holds them: the Snakefile's
    ``workflow.overwrite_configfiles``; none for the demo's default config); ``directory``: the working
    directory the run used (--directory); ``snakefile``: the main Snakefile. A run from the
    repository's own folder prints paths relative to it; any other prints them absolute, with
    --directory and --snakefile, so that the command works from wherever it is pasted.
    """

    configfiles: tuple[str, ...] = ()
    directory: str | None = None
    snakefile: str | None = None

    def _moved(self) -> bool:
        return bool(self.directory and self.snakefile
                    and Path(self.directory).resolve() != Path(self.snakefile).resolve().parent)

    def _path(self, path) -> str:
        path = Path(path)
        if not self._moved() and self.directory:
            try:
                return path.resolve().relative_to(Path(self.directory).resolve()).as_posix()
            except ValueError:
                pass
        return str(path)

    def report_command(self) -> str:
        """The ``snakemake --report`` line for this run."""
        parts = [REPORT_COMMAND]
        if self._moved():
            parts += [f"--snakefile {self.snakefile}", f"--directory {self.directory}"]
        parts += [f"--configfile {self._path(f)}" for f in self.configfiles]
        return " ".join(parts)

    def report_file(self) -> str:
        return str(Path(self.directory) / REPORT) if self._moved() else REPORT
RULE = "=" * 78

# A rejection's reason names the image's files; its kind is the reason without them, so that
# 500 missing files count as one kind. First match wins (ingest's and the images' wording).
REASON_KINDS = [
    (re.compile(r"^missing channel"), "missing channel"),
    (re.compile(r"^channel \w+ has \d+ files"), "two files for one channel"),
    (re.compile(r"^unreadable channel"), "unreadable channel"),
    (re.compile(r"^channel \w+ has mode"), "not a grey or RGB image"),
    (re.compile(r"^channel \w+ is .+, the others are"), "channels of different sizes"),
    (re.compile(r"^channel \S+: file .* not found"), "missing file"),
    (re.compile(r", line \d+ \(Id .*\): Id .* is on lines"), "repeated Id"),
    (re.compile(r", line \d+ \(Id .*\): split "), "unknown split"),
    (re.compile(r", line \d+ \(Id .*\): Id .* cannot name a file"), "Id that cannot name a file"),
    (re.compile(r", line \d+ \(Id .*\): "), "Target naming no class"),
]


def reason_kind(reason: str) -> str:
    """The kind of a rejection reason (its text up to the first colon when no kind matches)."""
    for pattern, kind in REASON_KINDS:
        if pattern.search(reason):
            return kind
    return reason.split(":", 1)[0].strip() or "no reason given"


@dataclass(frozen=True)
class Score:
    """A macro F1 with its 95% interval and the no-skill macro F1 of the same images."""

    value: float
    low: float
    high: float
    no_skill: float

    @property
    def clears_no_skill(self) -> bool:
        return self.low > self.no_skill

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] vs no-skill {self.no_skill:.3f}"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _score(record: dict | None, value: str, interval: str, no_skill: str) -> Score | None:
    if not record or record.get(value) is None or record.get(no_skill) is None:
        return None
    low, high = record.get(interval) or (record[value], record[value])
    return Score(record[value], low, high, record[no_skill])


def honest_score(root: Path, ensemble: str) -> Score | None:
    """The ensemble's honest OOF macro F1 (thresholds fitted on the other folds), if fitted yet."""
    record = _read_json(root / f"results/thresholds/{ensemble}.json")
    return _score(record, "honest_macro_f1", "honest_macro_f1_interval", "no_skill_macro_f1")


def true_test_score(root: Path, ensemble: str) -> Score | None:
    """The submission's true test macro F1, where the demo's test labels scored it."""
    record = _read_json(root / f"results/evaluation/{ensemble}.json")
    return _score(record, "test_macro_f1", "test_macro_f1_interval", "test_no_skill_macro_f1")


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {what}" for what, n in counter.most_common())


def image_lines(root: Path) -> list[str]:
    """Images used (by split and source), rejected (by kind of reason) and external ones dropped."""
    lines = []
    if (root / MANIFEST).is_file():
        manifest = pd.read_csv(root / MANIFEST, usecols=["split", "source"], dtype=str)
        used = []
        for split in ("train", "test"):
            sources = Counter(manifest.loc[manifest["split"] == split, "source"])
            detail = f" ({_counts(sources)})" if len(sources) > 1 else ""
            used.append(f"{sum(sources.values())} {split}{detail}")
        lines.append(f"Images used: {', '.join(used)}")
    if (root / REJECTED).is_file():
        rejected = pd.read_csv(root / REJECTED, dtype=str, keep_default_na=False)
        if len(rejected):
            kinds = Counter(reason_kind(r) for r in rejected["reason"])
            splits = Counter(rejected["split"])
            lines.append(f"Images rejected: {len(rejected)} ({_counts(splits)}): {_counts(kinds)}; "
                         f"each with its reason in {REJECTED}")
        else:
            lines.append(f"Images rejected: none ({REJECTED})")
    lines += duplicate_lines(root)
    external = _read_json(root / EXTERNAL_REPORT)
    if external:
        dropped = Counter({k: v for k, v in external.get("dropped", {}).items() if v})
        leaks = external.get("dropped", {}).get("duplicate_of_test", 0)
        lines.append(f"External images: {external.get('kept', 0)} of {external.get('list', 0)} kept"
                     + (f"; dropped {_counts(dropped)}" if dropped else "")
                     + " (results/external/cleaning.csv"
                     + (", test leaks in results/external/leaks.csv)" if leaks else ")"))
    return lines


def decoding_lines(root: Path) -> list[str]:
    """The bit-depth rule's warnings, and the images it clipped (per table of results/data/clipped/)."""
    lines = [f"Bit depth: {w}" for w in (_read_json(root / BIT_DEPTH) or {}).get("warnings", [])]
    for path in sorted((root / CLIPPED).glob("*.csv")):
        clipped = pd.read_csv(path, dtype={"Id": str}, keep_default_na=False)
        if len(clipped):
            first = clipped.iloc[0]
            ids = list(dict.fromkeys(clipped["Id"]))
            lines.append(f"Images clipped by the bit-depth rule ({path.stem}): {len(ids)}, e.g. {first['Id']} "
                         f"({first['channel']} {float(first['bright_share']):.0%} at 255, "
                         f"{float(first['dark_share']):.0%} at 0)" + "".join(f", {i}" for i in ids[1:3])
                         + f"; each with its channel and shares in {path.relative_to(root).as_posix()} "
                         "(docs/your-images.md: clipped images)")
    for path in sorted((root / "results/new_images").glob("*.csv")):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "clipped" in table and (table["clipped"] != "").any():
            ids = list(table.loc[table["clipped"] != "", "Id"])
            lines.append(f"New images clipped by the bit-depth rule: {len(ids)}, e.g. {ids[0]} "
                         f"({table.loc[table['Id'] == ids[0], 'clipped'].iloc[0]}); its clipped column in "
                         f"{path.relative_to(root).as_posix()}")
    return lines


def empty_class_lines(root: Path, ensembles: list[str]) -> list[str]:
    """The listed classes no kept training image holds, and how the scores count them."""
    vocabulary = _read_json(root / VOCABULARY)
    if not vocabulary or not (root / MANIFEST).is_file():
        return []
    manifest = pd.read_csv(root / MANIFEST, usecols=["split", "Target"], dtype=str, keep_default_na=False)
    held = {int(k) for t in manifest.loc[manifest["split"] == "train", "Target"] for k in t.split()}
    classes = vocabulary["classes"]
    empty = [name for k, name in enumerate(classes) if k not in held]
    if not empty:
        return []
    rows = []
    for name in ensembles:
        figures = [f"{kind} {record[key]['macro_f1']:.3f} [{record[key]['interval'][0]:.3f}, "
                   f"{record[key]['interval'][1]:.3f}]"
                   for kind, record, key in (("honest", _read_json(root / f"results/thresholds/{name}.json"),
                                              "honest_classes_with_images"),
                                             ("test", _read_json(root / f"results/evaluation/{name}.json"),
                                              "test_classes_with_images"))
                   if record and record.get(key)]
        if figures:
            rows.append(f"  {name}  {'; '.join(figures)}")
    n = len(classes)
    head = (f"Classes with no training image: {', '.join(empty)} ({len(empty)} of {n}). Each macro F1 above "
            f"averages all {n} classes, these as F1 0")
    tail = f"; over the {n - len(empty)} classes with images:" if rows else " (no model scored yet)"
    return [head + tail, *rows]


def cell_lines(root: Path, ensembles: list[str]) -> list[str]:
    """Cells found (and images skipped), and per ensemble with a cell truth: per-cell mAP of each method
    beside the two no-map baselines, and where the class maps point."""
    images_csv = root / "results/cells/images.csv"
    if not images_csv.is_file():
        return []
    images = pd.read_csv(images_csv, dtype={"Id": str}, keep_default_na=False)
    skipped = int((images["problem"] != "").sum())
    lines = [f"Cells: {int(images['cells'].sum())} in {len(images) - skipped} test images (median "
             f"{images['cells'].median():.0f} per image); {skipped or 'no'} images skipped (results/cells/images.csv)"]
    wrong = flagged(images)
    if wrong.any():
        lines.append(f"  {int(wrong.sum())} of {len(images)} masks look wrong (a cell no bigger than its nucleus, "
                     "or with a hole): their flags are in results/cells/images.csv")
    segmentation = _read_json(root / "results/cells/segmentation.json")
    if segmentation:
        s, b = segmentation["masks"], segmentation["disk_baseline"]
        lines.append(f"  segmentation F1 {s['f1']:.3f} [{s['low']:.3f}, {s['high']:.3f}] vs a disk per nucleus "
                     f"{b['f1']:.3f} (results/cells/segmentation.json)")
    for ensemble in ensembles:
        record = _read_json(root / f"results/cells/{ensemble}/cell_evaluation.json")
        if not record:
            continue
        m = record["cell_map"]
        learned = ", ".join(f"{k} {m[k]['map']:.3f} [{m[k]['low']:.3f}, {m[k]['high']:.3f}]"
                            for k in ("gated", "masked", "map", "blend") if k in m)
        game = record["pointing"]["all"]
        parts = "".join(f", {name} {m[k]['map']:.3f}" for k, name in (("image_models", "gated without the cell model"),
                                                                     ("cell_model", "the cell model alone")) if k in m)
        discount = f", image discounted for partial cells {m['whole']['map']:.3f}" if "whole" in m else ""
        lines.append(f"  {ensemble}  per-cell mAP {learned}{parts}; no-map baselines: image {m['image']['map']:.3f}, "
                     f"centre {m['centre']['map']:.3f}{discount}; located maps' peak in the class's region "
                     f"{game.get('hit', float('nan')):.2f} vs chance {game.get('chance', float('nan')):.2f}")
    return lines


def warning(ensemble: str, kind: str, score: Score) -> str:
    return (f"!!! NO EVIDENCE OF LEARNING: {ensemble}'s {kind} macro F1 {score.value:.3f} "
            f"[{score.low:.3f}, {score.high:.3f}] does not clear its no-skill line {score.no_skill:.3f}; "
            f"do not trust its predictions (learning curves: results/models/*/curves.png)")


def score_lines(root: Path, ensembles: list[str]) -> list[str]:
    """One line per ensemble with a score; a loud line per score whose interval does not clear no-skill."""
    rows, warnings = [], []
    width = max((len(e) for e in ensembles), default=0)
    for name in ensembles:
        honest, test = honest_score(root, name), true_test_score(root, name)
        if honest is None and test is None:
            continue
        parts = [f"honest {honest}" if honest else "honest (not fitted)"]
        if test:
            scored = (_read_json(root / f"results/evaluation/{name}.json") or {}).get("n_test_images")
            parts.append(f"test {test}" + (f" on {scored} test images" if scored is not None else ""))
        rows.append(f"  {name:<{width}}  " + "; ".join(parts))
        warnings += [warning(name, kind, s) for kind, s in (("honest", honest), ("test", test))
                     if s is not None and not s.clears_no_skill]
    if not rows:
        return []
    head = "Macro F1 [95% interval] (honest: out-of-fold, thresholds fitted on the other folds"
    head += "; test: the held-aside test labels)" if any("; test " in r for r in rows) else ")"
    return [head + ":", *rows, *warnings]


def output_lines(root: Path, ensembles: list[str], invocation: Invocation = Invocation()) -> list[str]:
    """Where the submissions, the comparison and the report are, and how to build the report."""
    lines = []
    submissions = [f"results/submission/{e}.csv" for e in ensembles if (root / f"results/submission/{e}.csv").is_file()]
    if submissions:
        best = max(ensembles, key=lambda e: (s.value if (s := honest_score(root, e)) else -1.0))
        pick = f"results/submission/{best}.csv"
        note = f" (best honest F1: {pick})" if len(submissions) > 1 and pick in submissions else ""
        lines.append(f"Submission{'s' if len(submissions) > 1 else ''}: {', '.join(submissions)}{note}")
    new = sorted(p.relative_to(root).as_posix() for p in (root / "results/new_images").glob("*.csv"))
    if new:
        lines.append(f"Predictions on new images: {', '.join(new)}")
    cells = sorted(p.relative_to(root).as_posix() for p in (root / "results/cells").glob("*/submission_2021.csv"))
    if cells:
        lines.append(f"Per-cell labels: results/cells/{{ensemble}}/cell_scores.csv; 2021 format: {', '.join(cells)}")
    if (root / "results/evaluation/comparison.csv").is_file():
        lines.append("Every ensemble side by side: results/evaluation/comparison.csv")
    lines.append(f"Report: {invocation.report_command()}, then open {invocation.report_file()} in a browser "
                 "(rebuild it after each run)")
    return lines


def duplicate_lines(root: Path) -> list[str]:
    """The source's own test leaks (naming the first pairs) and duplicate training clusters (source_duplicates)."""
    if not (root / LEAKS).is_file() or not (root / DUPLICATES).is_file():
        return []
    leaks = pd.read_csv(root / LEAKS, dtype=str, keep_default_na=False)
    clusters = pd.read_csv(root / DUPLICATES, dtype=str, keep_default_na=False)["cluster"].nunique()
    pairs = ", ".join(f"{t} ~ {m}" for t, m in zip(leaks["test_id"][:3], leaks["train_id"][:3]))
    leaked = (f"{leaks['test_id'].nunique()} test images duplicate a training image ({pairs}"
              + (", ..." if len(leaks) > 3 else "") + f"; {LEAKS})") if len(leaks) else f"none ({LEAKS})"
    return [f"Test leaks within the source: {leaked}",
            f"Duplicate training clusters: {clusters} (kept in one fold; {DUPLICATES})"]


def summary(root, ensembles: list[str], *, failed: bool = False, log=None,
            invocation: Invocation = Invocation()) -> str:
    """The summary's text for the working directory ``root``; ``failed`` for a run that stopped.

    ``log`` is Snakemake's log file (a path, or the list of them Snakemake hands its handlers);
    ``invocation``: how the run was started (its --configfile), for the commands printed.
    """
    root = Path(root)
    head = "HPA run summary"
    if failed:
        logs = ", ".join(map(str, log)) if isinstance(log, (list, tuple)) else log
        head += (": the run FAILED (see the error above" + (f"; Snakemake's log: {logs}" if logs else "")
                 + "). What results/ holds now, from this run or earlier ones:")
    body = (image_lines(root) + decoding_lines(root) + score_lines(root, list(ensembles))
            + empty_class_lines(root, list(ensembles))
            + cell_lines(root, list(ensembles))
            + output_lines(root, list(ensembles), invocation))
    return "\n".join([RULE, head, RULE, *body, RULE])


def print_summary(root, ensembles, *, failed: bool = False, log=None,
                  invocation: Invocation = Invocation()) -> None:
    """Print the summary; a summary that cannot be made says so in one line and never fails the run."""
    try:
        text = summary(root, ensembles, failed=failed, log=log, invocation=invocation)
    except Exception as err:  # noqa: BLE001 - the run's own result must stand whatever the files hold
        text = f"(no run summary: {type(err).__name__}: {err})"
    print(text, flush=True)

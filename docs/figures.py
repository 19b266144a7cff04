"""The README's pictures and every figure the docs quote about a demo run, from one finished
demo run: python docs/figures.py [RUN_DIR].

Writes docs/img/demo_field.png (one demo training field as the HPA colour composite beside its
four stains), docs/img/scores.png (every ensemble's honest and test macro F1 with their 95%
intervals beside the no-skill line) and docs/figures.json (the run's scores, intervals,
timings and counts, and the ranges the docs quote where machines differ), then rewrites every
``<!-- figures:NAME -->`` block of README.md and docs/*.md from that file
(tests/test_doc_figures.py checks that they agree). RUN_DIR is the run's working directory
(default: here); the field is the first training image holding --label (default Nucleoli), so
the same run gives the same pictures.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow/scripts"))
from hpa.classes import CHANNELS, CLASS_NAMES  # noqa: E402

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "img"
FIGURES = DOCS / "figures.json"
PAGES = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
BLOCK = re.compile(r"(<!-- figures:(\w+) -->\n)(.*?)(<!-- /figures -->)", re.S)
# What the docs quote where machines differ: the range each ensemble's scores take over the
# runs recorded on 2-core machines with and without native bf16 (which trains in bf16 or fp32;
# both, one thread a job): both 0.491/0.458 (bf16) and 0.479/0.444, branchnet 0.461/0.491 and
# 0.443/0.477, resnet18_focal 0.313/0.341 and 0.304/0.322 (honest/test), with room for the
# noise of a changed float sum. tests/test_doc_figures.py checks each new run against them.
RANGES = {"both": {"honest": [0.45, 0.51], "test": [0.42, 0.49]},
          "branchnet": {"honest": [0.42, 0.48], "test": [0.45, 0.52]},
          "resnet18_focal": {"honest": [0.28, 0.34], "test": [0.29, 0.37]},
          "minutes": [4, 12]}
# The atlas's own colours: protein green, microtubules red, nucleus blue, ER yellow.
TINT = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0)}
STAIN = {"red": "microtubules", "green": "protein", "blue": "nucleus", "yellow": "ER"}


def stretch(plane: np.ndarray) -> np.ndarray:
    """A stain's 99.5th percentile shown at full brightness, as image viewers show a dim stain."""
    return np.clip(plane * 255.0 / max(np.percentile(plane, 99.5), 1.0), 0, 255)


def composite(planes: dict[str, np.ndarray]) -> np.ndarray:
    """HPA colour composite (float RGB in 0..1): each stain added in its colour, yellow at half
    weight so that the protein's green stays the brightest signal, as the atlas shows it."""
    rgb = sum(np.multiply.outer(planes[c] / 255.0, TINT[c]) * (0.5 if c == "yellow" else 1.0)
              for c in CHANNELS)
    return np.clip(rgb, 0, 1)


def save(fig, out: Path) -> None:
    """Save as a 256-colour PNG: a third of the size of matplotlib's RGBA, the same to the eye."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(256).save(out, optimize=True)


def field_figure(run: Path, label: str, out: Path) -> None:
    demo = run / "resources/demo"
    train = pd.read_csv(demo / "train.csv", dtype=str)
    wanted = str(CLASS_NAMES.index(label))
    row = train[train["Target"].str.split().apply(lambda t: wanted in t)].iloc[0]
    planes = {c: stretch(np.asarray(Image.open(demo / f"train/{row['Id']}_{c}.png").convert("L"), float))
              for c in CHANNELS}
    names = ", ".join(CLASS_NAMES[int(c)] for c in row["Target"].split())
    fig = plt.figure(figsize=(7.2, 3.6), dpi=110)
    grid = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(composite(planes), interpolation="bilinear")
    ax.set_title(f"demo field, labels: {names}", fontsize=9)
    ax.axis("off")
    for k, c in enumerate(CHANNELS):
        ax = fig.add_subplot(grid[k // 2, 2 + k % 2])
        ax.imshow(np.multiply.outer(planes[c] / 255.0, TINT[c]), interpolation="bilinear")
        ax.set_title(f"{c}: {STAIN[c]}", fontsize=8)
        ax.axis("off")
    save(fig, out)


def scores(run: Path) -> pd.DataFrame:
    """Per ensemble: honest and (where scored) test macro F1, intervals and no-skill."""
    rows = []
    for path in sorted((run / "results/thresholds").glob("*.json")):
        record = json.loads(path.read_text())
        evaluation = run / f"results/evaluation/{path.stem}.json"
        test = json.loads(evaluation.read_text()) if evaluation.is_file() else {}
        rows.append({"ensemble": path.stem, "honest": record["honest_macro_f1"],
                     "honest_ci": record["honest_macro_f1_interval"], "oof_no_skill": record["no_skill_macro_f1"],
                     "test": test.get("test_macro_f1"), "test_ci": test.get("test_macro_f1_interval"),
                     "test_no_skill": test.get("test_no_skill_macro_f1")})
    return pd.DataFrame(rows).sort_values("honest")


def scores_figure(run: Path, out: Path) -> None:
    table = scores(run)
    fig, ax = plt.subplots(figsize=(7.2, 1.4 + 0.55 * len(table)), dpi=110)
    y = np.arange(len(table))
    for offset, kind, colour in ((0.12, "honest", "tab:blue"), (-0.12, "test", "tab:orange")):
        have = table[kind].notna().to_numpy()
        if not have.any():
            continue
        low, high = np.array(table.loc[have, f"{kind}_ci"].tolist()).T
        value = table.loc[have, kind].to_numpy()
        label = "honest (out-of-fold)" if kind == "honest" else "test (held-aside labels)"
        ax.errorbar(value, y[have] + offset, xerr=[value - low, high - value], fmt="o", color=colour,
                    capsize=3, label=f"{label}, 95% interval")
    no_skill = table[["oof_no_skill", "test_no_skill"]].max(axis=1)
    ax.scatter(no_skill, y, marker="|", s=400, color="grey", label="no-skill (every class predicted)")
    ax.set_yticks(y, table["ensemble"])
    ax.set_xlim(0, max(0.6, float(np.nanmax(table[["honest", "test"]].to_numpy(float))) + 0.1))
    ax.set_xlabel("macro F1")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    save(fig, out)

# ---- the figures the docs quote: collected from the run into figures.json ----

def num(x, places: int = 3, sign: bool = False) -> str:
    """A score as the docs print it: fixed places, a true minus sign."""
    return f"{x:{'+' if sign else ''}.{places}f}".replace("-", "−")


def interval(low, high, places: int = 3) -> str:
    return f"[{num(low, places)}, {num(high, places)}]"


def snakemake_log(run: Path) -> Path | None:
    """The log of the run that did the most jobs (the latest of equals): the whole demo, not a
    later report or one-target rerun."""
    logs = sorted((run / ".snakemake/log").glob("*.snakemake.log"))
    done = [(p.read_text().count("Finished job"), p) for p in logs]
    return max(done, key=lambda d: d[0])[1] if done else None


def wall_seconds(log: Path) -> int:
    """From the first job's start to the last job's end, by the log's timestamps."""
    stamps = re.findall(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", log.read_text(), re.M)
    times = [datetime.strptime(" ".join(t.split()), "%a %b %d %H:%M:%S %Y") for t in stamps]
    return round((times[-1] - times[0]).total_seconds())


def job_seconds(run: Path) -> dict[str, float]:
    """Seconds of job time per rule, summed over its jobs' Snakemake benchmark files."""
    seconds: dict[str, float] = {}
    for path in sorted((run / "benchmarks").rglob("*.tsv")):
        parts = path.relative_to(run / "benchmarks").parts
        rule = parts[0] if len(parts) > 1 else path.stem
        seconds[rule] = round(seconds.get(rule, 0.0) + float(pd.read_csv(path, sep="\t")["s"].sum()), 1)
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1]))


def precisions(run: Path) -> list[str]:
    """What the training jobs computed in, as their logs say (hpa.runtime.device.autocast_dtype)."""
    said = {m for p in (run / "logs/train").rglob("*.log") for m in re.findall(r"precision: (\w+)", p.read_text())}
    return sorted(said) or ["not logged"]


def image_counts(results: Path) -> dict:
    """Training images (and how many of them external), test images, and the cells found in them."""
    manifest = pd.read_csv(results / "data/manifest.csv", usecols=["split", "source"])
    train = manifest[manifest["split"] == "train"]
    counts = {"train": len(train), "train_external": int((train["source"] == "external").sum()),
              "test": int((manifest["split"] == "test").sum())}
    cells = results / "cells/cells.csv"
    if cells.is_file():
        per_field = pd.read_csv(cells, usecols=["Id"])["Id"].value_counts()
        counts |= {"test_cells": int(per_field.sum()), "cells_per_field_median": float(per_field.median())}
    return counts


ENSEMBLE_KEYS = ["method", "honest_macro_f1", "honest_low", "honest_high", "oof_no_skill", "test_macro_f1",
                 "test_low", "test_high", "test_no_skill", "test_minus_best", "minus_best_low", "minus_best_high",
                 "train_s", "predict_s"]
CELL_KEYS = ["measure", "value", "low", "high", "baseline", "baseline_value", "difference", "difference_low",
             "difference_high"]


def plain(value):
    """numpy scalars as JSON numbers, rounded as the docs print them; NaN as None."""
    if isinstance(value, str):
        return value
    return None if pd.isna(value) else round(float(value), 6)


def cell_rows(results: Path, ensemble: str) -> list[dict]:
    """The per-cell evaluation's rows (pointing game: all classes only; no blend, which tracks map), as
    evaluate_cells wrote them."""
    path = results / f"cells/{ensemble}/cell_evaluation.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    pointing = table["measure"].str.startswith("pointing game")
    keep = (~pointing | table["measure"].str.contains("all classes")) & ~table["measure"].str.contains("blend scores")
    return [{k: plain(row[k]) for k in CELL_KEYS} for row in table[keep].to_dict("records")]


def ensemble_order(run: Path, found: list[str]) -> list[str]:
    """The config's order (what the summary prints), else the comparison's."""
    config = run / "config/config.yaml"
    named = list(yaml.safe_load(config.read_text()).get("ensembles", {})) if config.is_file() else []
    return [e for e in named if e in found] or found


def collect(run: Path) -> dict:
    """Everything the docs quote about the run, as plain values, beside the ranges they quote."""
    from hpa.postprocess.summary import summary

    results = run / "results"
    comparison = pd.read_csv(results / "evaluation/comparison.csv")
    ensembles = {row["ensemble"]: {k: plain(row[k]) for k in ENSEMBLE_KEYS if k in row}
                 for row in comparison.to_dict("records")}
    log = snakemake_log(run)
    return {
        "regenerate": "python docs/figures.py RUN_DIR, RUN_DIR a finished demo run (snakemake --cores 2)",
        "run": {"date": log.name[:10] if log else None, "wall_s": wall_seconds(log) if log else None,
                "job_s": job_seconds(run), "precision": precisions(run), "images": image_counts(results),
                "ensembles": ensembles, "cells": {e: cell_rows(results, e) for e in ensembles}},
        "summary": summary(run, ensemble_order(run, list(ensembles))).strip("\n").splitlines(),
        "ranges": RANGES,
    }


# ---- the docs' blocks, rendered from figures.json alone ----

WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def render_quick_start(fig: dict) -> str:
    run, ranges = fig["run"], fig["ranges"]
    low = min(r["test"][0] for e, r in ranges.items() if e in run["ensembles"])
    high = max(r["test"][1] for e, r in ranges.items() if e in run["ensembles"])
    no_skill = max(e["test_no_skill"] for e in run["ensembles"].values())
    count = WORDS.get(len(run["ensembles"]), len(run["ensembles"]))
    minutes = ranges["minutes"]
    return (f"generates the synthetic demo dataset and runs every stage to `results/submission/both.csv`\n"
            f"({minutes[0]} to {minutes[1]} minutes on 2 CPU cores; this run: {run['wall_s']} s);"
            f" its {count} ensembles score a test macro\nF1 of {low:.2f} to {high:.2f}, by ensemble"
            f" and machine, against {num(no_skill)} for predicting every class: see\n"
            "`results/evaluation/comparison.csv`.\n")


def render_summary(fig: dict) -> str:
    return "```text\n" + "\n".join(fig["summary"]) + "\n```\n"


def render_demo_scores(fig: dict) -> str:
    run, ranges = fig["run"], fig["ranges"]
    lines = ["| ensemble | threshold | honest macro F1 [95% interval] | test macro F1 [95% interval] | no-skill (test)"
             " | over machines: honest; test |", "| --- | --- | --- | --- | --- | --- |"]
    for name, e in run["ensembles"].items():
        r = ranges.get(name)
        span = f"{r['honest'][0]:.2f}–{r['honest'][1]:.2f}; {r['test'][0]:.2f}–{r['test'][1]:.2f}" if r else "not recorded"
        lines.append(f"| `{name}` | {e['method']} | {num(e['honest_macro_f1'])} {interval(e['honest_low'], e['honest_high'])}"
                     f" | {num(e['test_macro_f1'])} {interval(e['test_low'], e['test_high'])} | {num(e['test_no_skill'])}"
                     f" | {span} |")
    best = next(iter(run["ensembles"]))
    others = [f"`{n}` {num(e['test_minus_best'], sign=True)} {interval(e['minus_best_low'], e['minus_best_high'])}"
              for n, e in run["ensembles"].items() if n != best and e.get("test_minus_best") is not None]
    lines += ["", f"(this run: {run['date']}, 2 CPU cores, {run['wall_s']} s, trained in {' and '.join(run['precision'])}.)"
              f" A user without test labels picks `{best}`, the best honest estimate; the others' paired test"
              f" differences to it: {', '.join(others)}."]
    return "\n".join(lines) + "\n"


def render_demo_run(fig: dict) -> str:
    run = fig["run"]
    n = run["images"]
    lines = [f"The run behind every figure here ({run['date']}, 2 CPU cores, trained in"
             f" {' and '.join(run['precision'])}): {run['wall_s']} s from the first job to the last;"
             f" {n['train']:,} training images ({n['train_external']:,} of them external), {n['test']:,} test"
             f" images and the {n.get('test_cells', 0):,} cells found in them. Each rule's jobs took:",
             "", "| rule | job seconds (all its jobs) |", "| --- | --- |"]
    lines += [f"| `{rule}` | {seconds:,.1f} |" for rule, seconds in run["job_s"].items() if seconds >= 1]
    return "\n".join(lines) + "\n"


def render_cells(fig: dict) -> str:
    """The per-cell evaluation of the ensemble a user would pick (the best honest estimate)."""
    run = fig["run"]
    best = next(iter(run["ensembles"]))
    lines = [f"| measure (`{best}`) | the pipeline [95% interval] | baseline | paired difference [95% interval] |",
             "| --- | --- | --- | --- |"]
    for r in run["cells"][best]:
        places = 2 if r["measure"].startswith("pointing") else 3
        lines.append(f"| {r['measure']} | {num(r['value'], places)} {interval(r['low'], r['high'], places)}"
                     f" | {r['baseline']}: {num(r['baseline_value'], places)}"
                     f" | {num(r['difference'], 3, sign=True)} {interval(r['difference_low'], r['difference_high'])} |")
    images = run["images"]
    lines += ["", f"({images.get('test_cells', 0):,} cells found in the {images['test']:,} test fields,"
              f" a median of {images.get('cells_per_field_median', 0):g} per field;"
              f" `results/cells/{best}/cell_evaluation.csv`.)"]
    return "\n".join(lines) + "\n"


RENDER = {"quick_start": render_quick_start, "summary": render_summary, "demo_scores": render_demo_scores,
          "demo_run": render_demo_run, "cells": render_cells}


def blocks(text: str) -> list[tuple[str, str]]:
    """Each ``<!-- figures:NAME -->`` block of a page: (NAME, its text)."""
    return [(m[2], m[3]) for m in BLOCK.finditer(text)]


def refresh(text: str, fig: dict) -> str:
    """The page with every block rendered anew from ``fig``."""
    return BLOCK.sub(lambda m: m[1] + RENDER[m[2]](fig) + m[4], text)


def outside_ranges(fig: dict) -> list[str]:
    """The run's scores that fall outside the ranges the docs quote (and its time outside the minutes)."""
    wrong = []
    for name, e in fig["run"]["ensembles"].items():
        for kind, value in (("honest", e["honest_macro_f1"]), ("test", e["test_macro_f1"])):
            low, high = fig["ranges"].get(name, {}).get(kind, [None, None])
            if low is None or not low <= value <= high:
                wrong.append(f"{name} {kind} {value} outside {low}-{high}")
    low, high = fig["ranges"]["minutes"]
    if fig["run"]["wall_s"] and not low * 60 <= fig["run"]["wall_s"] <= high * 60:
        wrong.append(f"wall time {fig['run']['wall_s']} s outside {low}-{high} minutes")
    return wrong


def write_figures(run: Path, out: Path, pages) -> dict:
    """figures.json from the run, and every page's blocks from figures.json."""
    fig = collect(run)
    out.write_text(json.dumps(fig, indent=1, ensure_ascii=False) + "\n")
    for page in pages:
        page.write_text(refresh(page.read_text(), fig))
    for problem in outside_ranges(fig):
        print(f"warning: {problem}: the docs' range no longer holds; widen RANGES in docs/figures.py if the "
              f"recipe or the machine explains it, then rerun this script")
    return fig


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=".", type=Path, help="a finished demo run's directory")
    parser.add_argument("--label", default="Nucleoli", choices=CLASS_NAMES, help="class the field shows")
    parser.add_argument("--out", default=OUT, type=Path, help="folder for the PNGs")
    parser.add_argument("--figures", default=FIGURES, type=Path, help="the JSON of quoted figures")
    parser.add_argument("--pages", nargs="*", type=Path, default=PAGES, help="pages whose blocks to rewrite")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    field_figure(args.run, args.label, args.out / "demo_field.png")
    scores_figure(args.run, args.out / "scores.png")
    for name in ("demo_field.png", "scores.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} kB")
    write_figures(args.run, args.figures, args.pages)
    print(f"{args.figures}, and the blocks of {len(args.pages)} pages")


if __name__ == "__main__":
    main()

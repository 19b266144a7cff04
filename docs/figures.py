"""The README's pictures, from a finished demo run: python docs/figures.py [RUN_DIR].

Writes docs/img/demo_field.png (one demo training field as the HPA colour composite beside its
four stains) and docs/img/scores.png (every ensemble's honest and test macro F1 with their 95%
intervals beside the no-skill line). RUN_DIR is the run's working directory (default: here);
the field is the first training image holding --label (default Nucleoli), so the same run gives
the same pictures.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow/scripts"))
from hpa.classes import CHANNELS, CLASS_NAMES  # noqa: E402

OUT = Path(__file__).resolve().parent / "img"
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=".", type=Path, help="a finished demo run's directory")
    parser.add_argument("--label", default="Nucleoli", choices=CLASS_NAMES, help="class the field shows")
    parser.add_argument("--out", default=OUT, type=Path, help="folder for the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    field_figure(args.run, args.label, args.out / "demo_field.png")
    scores_figure(args.run, args.out / "scores.png")
    for name in ("demo_field.png", "scores.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} kB")


if __name__ == "__main__":
    main()

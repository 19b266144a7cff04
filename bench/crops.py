"""Crop training and crop TTA against whole images, measured: paired test macro F1 differences.

Run after both runs of config/benchmark_crops.yaml have finished::

    snakemake --cores 2 --configfile config/benchmark_crops.yaml --directory runs/crops
    snakemake --cores 2 --configfile config/benchmark_crops.yaml config/whole_images.yaml --directory runs/whole
    python -m bench crops runs/whole runs/crops

Both runs draw the same synthetic images (same generator seed), so each ensemble's two
submissions predict the same test images and are compared on the same bootstrap resamples.
"""

from __future__ import annotations

import pandas as pd

from bench.ablations import Run, markdown
from hpa.metrics import no_skill_macro_f1, paired_difference, score_with_interval


def crop_table(whole: Run, crops: Run) -> pd.DataFrame:
    if not whole.truth["Id"].equals(crops.truth["Id"]):
        raise ValueError(f"{whole.root} and {crops.root} have different test images; run both from one config")
    rows = []
    for ensemble in crops.comparison["ensemble"]:
        a, b = crops.prediction(ensemble), whole.prediction(ensemble)
        on, off, d = score_with_interval(crops.y, a), score_with_interval(whole.y, b), paired_difference(crops.y, a, b)
        def ci(s):
            return f"{s['macro_f1']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"

        rows.append({
            "ensemble": ensemble, "whole images [95% CI]": ci(off), "crops [95% CI]": ci(on),
            "crops − whole [95% CI]": f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]",
            "verdict": "helps" if d["low"] > 0 else "hurts" if d["high"] < 0 else "within noise",
        })
    return pd.DataFrame(rows)


def main(whole_root: str = "runs/whole", crops_root: str = "runs/crops") -> pd.DataFrame:
    whole, crops = Run(whole_root), Run(crops_root)
    table = crop_table(whole, crops)
    print(f"{len(crops.y)} test images; no-skill macro F1 {no_skill_macro_f1(crops.y):.4f}\n")
    print(markdown(table))
    return table

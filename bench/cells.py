"""Cell segmentation on demo fields against the generator's true cells, and the truth's cost.

100 test-like fields at 128 px (label sets as the demo draws them; fields and seeds not those
the segmentation's defaults were chosen on). Figures: matched-cell F1 at IoU 0.5 with its
bootstrap interval for the embedded segmentation and two baselines (each nucleus grown by a
fixed distance; the whole foreground as one cell), the paired difference against the first
baseline, ms per image; and what keeping the truth aside adds to the demo's test images.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from hpa.cells.segment import disk_cells, one_cell, segment
from hpa.cells.segment_metrics import cell_counts, match_cells, matched_f1_with_interval, paired_f1_difference
from hpa.classes import CHANNELS
from hpa.demo.dataset import sample_label_sets
from hpa.demo.render import render_field
from hpa.demo.truth import write_truth

from .common import report

BLUE, BODY = CHANNELS.index("blue"), [CHANNELS.index("red"), CHANNELS.index("yellow")]


def _fields(n: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    return [(set(s), int(rng.integers(0, 2**62))) for s in sample_label_sets(n, rng)]


def _render_cost(fields, size: int) -> dict:
    """ms per image to render without and with the truth, and to write the truth."""
    times = {"plain": 0.0, "truth": 0.0, "write": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (labels, seed) in enumerate(fields):
            t0 = time.perf_counter()
            render_field(labels, size, np.random.default_rng(seed))
            t1 = time.perf_counter()
            _, truth = render_field(labels, size, np.random.default_rng(seed), truth=True)
            t2 = time.perf_counter()
            write_truth(tmp, f"im{k}", truth)
            t3 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key] += dt
    return {f"{k}_ms_per_image": round(1000 * v / len(fields), 2) for k, v in times.items()}


def main(n: int = 100, size: int = 128, seed: int = 2200) -> dict:
    fields = _fields(n, size, seed)
    counts = {"watershed": [], "disk": [], "one_cell": []}
    ious, seconds = [], 0.0
    for labels, s in fields:
        image, truth = render_field(labels, size, np.random.default_rng(s), truth=True)
        t0 = time.perf_counter()
        seg = segment(image[BLUE], image[BODY])
        seconds += time.perf_counter() - t0
        ious += [iou for *_, iou in match_cells(truth.cells, seg.cells)]
        counts["watershed"].append(cell_counts(truth.cells, seg.cells))
        counts["disk"].append(cell_counts(truth.cells, disk_cells(seg.nuclei, seg.nucleus_radius)))
        counts["one_cell"].append(cell_counts(truth.cells, one_cell(image[BODY], seg.nuclei, seg.nucleus_radius)))
    scores = {name: {k: round(v, 4) if isinstance(v, float) else v for k, v in matched_f1_with_interval(c).items()}
              for name, c in counts.items()}
    diff = paired_f1_difference(counts["watershed"], counts["disk"])
    return report("cells", {
        "images": n, "size": size, **scores,
        "watershed_minus_disk": {k: round(v, 4) for k, v in diff.items()},
        "watershed_mean_matched_iou": round(float(np.mean(ious)), 4),
        "segment_ms_per_image": round(1000 * seconds / n, 2),
        **_render_cost(fields[:50], size),
    })

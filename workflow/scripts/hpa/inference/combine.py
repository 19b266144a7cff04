"""The ``combine_views`` rule: one fold's probability tables for one TTA setting and aggregate, from
the views ``predict`` kept (``views.npz``). numpy only: a job of seconds need not import torch."""

from __future__ import annotations

import numpy as np

from hpa.files import write_csv
from hpa.tables import probability_table
from hpa.views import transforms_for

SPLITS = ("oof", "test")
AGGREGATES = {"mean": lambda p: p.mean(0), "max": lambda p: p.max(0)}  # as hpa.inference.tta's, in numpy


def combine_job(*, views_npz, tta: str, aggregate: str, oof_csv, test_csv) -> None:
    saved = np.load(views_npz)
    have = sorted(set(saved["view_t"].tolist()))
    wanted = transforms_for(tta)
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise ValueError(f"{views_npz}: views {missing} of tta {tta!r} were not predicted (have {have}); "
                         f"rerun its predict job (snakemake -R predict)")
    # Every crop, each through the wanted views, in the order a direct TTA pass stacks them.
    key = list(zip(saved["view_crop"].tolist(), saved["view_t"].tolist()))
    rows = [key.index((c, t)) for c in sorted(set(saved["view_crop"].tolist())) for t in wanted]
    reduce = AGGREGATES[aggregate]
    for split, out in zip(SPLITS, (oof_csv, test_csv)):
        write_csv(probability_table(saved[f"{split}_ids"], reduce(saved[split][rows])), out)

"""Rule evaluate_test (demo only): the true test macro F1 beside the OOF estimate."""

import pandas as pd

from hpa.data import read_labels
from hpa.ensemble import score_submission
from hpa.io import read_json, setup_logging, write_json

setup_logging(snakemake.log[0])
sub = pd.read_csv(snakemake.input.submission, dtype=str, keep_default_na=False)
write_json(
    {
        "test_macro_f1": round(score_submission(sub, read_labels(snakemake.input.test_labels)), 6),
        "oof_macro_f1": read_json(snakemake.input.thresholds)["oof_macro_f1"],
    },
    snakemake.output.evaluation,
)

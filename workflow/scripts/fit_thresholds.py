"""Rule fit_thresholds: per-class thresholds fitted on an ensemble's OOF probabilities."""

import pandas as pd

from hpa.data import read_manifest
from hpa.ensemble import fit_thresholds
from hpa.io import setup_logging, write_csv, write_json

setup_logging(snakemake.log[0])
record, per_class = fit_thresholds(
    pd.read_csv(snakemake.input.oof, dtype={"Id": str}),
    read_manifest(snakemake.input.manifest, split="train"),
    snakemake.params.method,
)
write_csv(per_class, snakemake.output.per_class)
write_json(record, snakemake.output.thresholds)

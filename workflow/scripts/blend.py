"""Rule blend: average an ensemble's folds and models into OOF and test probabilities."""

from hpa.ensemble import blend
from hpa.io import setup_logging, write_csv

setup_logging(snakemake.log[0])
for kind in ("oof", "test"):
    write_csv(blend(snakemake.params[kind], kind).round(6), snakemake.output[kind])

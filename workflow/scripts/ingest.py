"""Rule ingest: validate a Kaggle-layout source and write the manifest."""

from pathlib import Path

from hpa.data.ingest import image_dirs_of, ingest
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log.log)
manifest, rejected = ingest(
    # The Kaggle layout: train.csv, sample_submission.csv, train/ and test/ side by side (all inputs).
    Path(snakemake.input.train_csv).parent,
    snakemake.params.source,
    workers=4 * snakemake.threads,
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
    external_csv=snakemake.input.get("kept"),
    image_dirs=image_dirs_of(snakemake.params.full_size),
    rejected_csv=snakemake.log.rejected,  # written before a stop for too many
)
write_csv(rejected, snakemake.output.rejected)
write_csv(manifest, snakemake.output.manifest)

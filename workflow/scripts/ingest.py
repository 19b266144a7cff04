"""Rule ingest: validate the source (a Kaggle-layout folder or a sample sheet) and write the manifest."""

from pathlib import Path

from hpa.classes import Vocabulary
from hpa.data.ingest import image_dirs_of, ingest
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log.log)
train_csv = snakemake.input.get("train_csv")
manifest, rejected = ingest(
    # The Kaggle layout: train.csv, sample_submission.csv, train/ and test/ side by side (all inputs).
    Path(train_csv).parent if train_csv else None,
    snakemake.params.source,
    vocab=Vocabulary.read(snakemake.input.vocabulary),
    samples=snakemake.input.get("samples"),
    id_column=snakemake.params.id_column,
    target_column=snakemake.params.target_column,
    workers=4 * snakemake.threads,
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
    external_csv=snakemake.input.get("kept"),
    image_dirs=image_dirs_of(snakemake.params.full_size),
    rejected_csv=snakemake.log.rejected,  # written before a stop for too many
)
write_csv(rejected, snakemake.output.rejected)
write_csv(manifest, snakemake.output.manifest)

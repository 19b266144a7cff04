"""Rule hash_images: perceptual hashes of every train and test image of the source, once."""

from pathlib import Path

from hpa.external.dedup import hash_source
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log[0])
hashes = hash_source(Path(snakemake.input.train_csv).parent, snakemake.params.hash, workers=2 * snakemake.threads)
write_csv(hashes, snakemake.output.hashes)

"""Rule embedding_neighbours: each image's nearest training image, out-of-fold and for test."""

from hpa.embedding.neighbours import run_neighbours_job
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
run_neighbours_job(
    embeddings=snakemake.input.embeddings,
    folds=snakemake.params.folds,
    folds_csv=snakemake.input.folds,
    manifest_csv=snakemake.input.manifest,
    neighbours_csv=snakemake.output.neighbours,
)

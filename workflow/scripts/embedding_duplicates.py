"""Rule embedding_duplicates: image pairs above a cosine, beside the pHash clusters."""

from hpa.embedding.neighbours import run_duplicates_job
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
run_duplicates_job(
    embeddings=snakemake.input.embeddings,
    manifest_csv=snakemake.input.manifest,
    phash_csv=snakemake.input.get("duplicates"),
    min_similarity=snakemake.params.min_similarity,
    duplicates_csv=snakemake.output.duplicates,
)

"""Rule embed: one fold's embedding of every training and test image."""

from hpa.embedding.job import run_embed_job
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
run_embed_job(
    checkpoint=snakemake.input.checkpoint,
    train_npy=snakemake.input.train_npy,
    train_index=snakemake.input.train_index,
    test_npy=snakemake.input.test_npy,
    test_index=snakemake.input.test_index,
    embeddings=snakemake.output.embeddings,
    batch_size=snakemake.params.batch_size,
    flips=snakemake.params.flips,
    threads=snakemake.threads,
)

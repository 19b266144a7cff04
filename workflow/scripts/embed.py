"""Rule embed: one fold's embedding of every training and test image."""

from hpa.files import setup_logging
from hpa.training.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# This job's GPUs are chosen before torch is imported, so CUDA only ever sees those.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    from hpa.embedding.job import run_embed_job

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

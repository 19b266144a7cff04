"""Rule embed: one fold's embedding of every training and test image."""

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.runtime.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# With scratch set, read the caches from node-local copies (a runtime setting: not a param).
train_npy, train_index, test_npy, test_index = stage(
    [snakemake.input.train_npy, snakemake.input.train_index, snakemake.input.test_npy, snakemake.input.test_index],
    snakemake.config.get("scratch"),
)
# This job's GPUs are chosen before torch is imported, so CUDA only ever sees those.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    from hpa.embedding.job import run_embed_job

    run_embed_job(
        checkpoint=snakemake.input.checkpoint,
        train_npy=train_npy,
        train_index=train_index,
        test_npy=test_npy,
        test_index=test_index,
        embeddings=snakemake.output.embeddings,
        batch_size=snakemake.params.batch_size,
        flips=snakemake.params.flips,
        threads=snakemake.threads,
    )

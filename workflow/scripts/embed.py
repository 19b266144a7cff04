"""Rule embed: one fold's embedding of every training and test image."""

from hpa.runtime.gpu_job import gpu_job

caches = [snakemake.input.train_npy, snakemake.input.train_index, snakemake.input.test_npy, snakemake.input.test_index]
with gpu_job(snakemake, caches) as (train_npy, train_index, test_npy, test_index):
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

"""Rule train_embedding: the ArcFace embedding of one fold, trained on the other folds' images."""

from hpa.runtime.gpu_job import gpu_job

with gpu_job(snakemake, [snakemake.input.npy, snakemake.input.index]) as (cache_npy, cache_index):
    from hpa.embedding.job import run_training_job

    run_training_job(
        cache_npy=cache_npy,
        cache_index=cache_index,
        stats_json=snakemake.input.stats,
        folds_csv=snakemake.input.folds,
        manifest_csv=snakemake.input.manifest,
        vocabulary_json=snakemake.input.vocabulary,
        embedding=snakemake.params.embedding,
        fold=int(snakemake.wildcards.fold),
        checkpoint=snakemake.output.checkpoint,
        history_csv=snakemake.output.history,
        threads=snakemake.threads,
    )

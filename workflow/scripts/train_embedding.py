"""Rule train_embedding: the ArcFace embedding of one fold, trained on the other folds' images."""

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.runtime.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# With scratch set, read the cache from a node-local copy (a runtime setting: not a param).
cache_npy, cache_index = stage([snakemake.input.npy, snakemake.input.index], snakemake.config.get("scratch"))
# This job's GPUs are chosen before torch is imported, so CUDA only ever sees those.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    from hpa.embedding.job import run_training_job

    run_training_job(
        cache_npy=cache_npy,
        cache_index=cache_index,
        stats_json=snakemake.input.stats,
        folds_csv=snakemake.input.folds,
        manifest_csv=snakemake.input.manifest,
        embedding=snakemake.params.embedding,
        fold=int(snakemake.wildcards.fold),
        checkpoint=snakemake.output.checkpoint,
        history_csv=snakemake.output.history,
        threads=snakemake.threads,
    )

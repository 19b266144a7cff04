"""Rule train_embedding: the ArcFace embedding of one fold, trained on the other folds' images."""

from hpa.embedding.job import run_training_job
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
run_training_job(
    cache_npy=snakemake.input.npy,
    cache_index=snakemake.input.index,
    stats_json=snakemake.input.stats,
    folds_csv=snakemake.input.folds,
    manifest_csv=snakemake.input.manifest,
    embedding=snakemake.params.embedding,
    fold=int(snakemake.wildcards.fold),
    checkpoint=snakemake.output.checkpoint,
    history_csv=snakemake.output.history,
    threads=snakemake.threads,
)

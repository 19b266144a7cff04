"""Rule train: one model on one fold."""

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.runtime.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# With scratch set, read the cache from a node-local copy (a runtime setting: not a param).
cache_npy, cache_index = stage([snakemake.input.npy, snakemake.input.index], snakemake.config.get("scratch"))
# params.model leaves out the runtime-only keys (compile), so that switching them reruns nothing;
# they come from the config as given, and TrainConfig's defaults (the schema's) fill in the rest.
model_cfg = {**snakemake.config["models"][snakemake.wildcards.model], **snakemake.params.model}
# This job's GPUs are chosen before torch is imported, so CUDA only ever sees those.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    from hpa.training.job import run_job

    run_job(
        cache_npy=cache_npy,
        cache_index=cache_index,
        stats_json=snakemake.input.stats,
        folds_csv=snakemake.input.folds,
        manifest_csv=snakemake.input.manifest,
        model_name=snakemake.wildcards.model,
        model_cfg=model_cfg,
        fold=int(snakemake.wildcards.fold),
        checkpoint=snakemake.output.checkpoint,
        history_csv=snakemake.output.history,
        oof_csv=snakemake.output.oof,
        threads=snakemake.threads,
        sampling_weights=snakemake.input.sampling_weights or None,
        image_size=snakemake.params.image_size,
    )

"""Rules train and train_cell_model: one model on one fold (an image model, or the cell-level model on the
cells' crops)."""

from hpa.runtime.gpu_job import gpu_job

# params.model leaves out the runtime-only keys (compile), so that switching them reruns nothing; they come
# from the config's entry as given (params.entry: its keys), and TrainConfig's defaults fill in the rest.
given = snakemake.config
for key in snakemake.params.entry:
    given = given[key]
model_cfg = {**given, **snakemake.params.model}
with gpu_job(snakemake, [snakemake.input.npy, snakemake.input.index]) as (cache_npy, cache_index):
    from hpa.training.job import run_job

    run_job(
        cache_npy=cache_npy,
        cache_index=cache_index,
        stats_json=snakemake.input.stats,
        folds_csv=snakemake.input.folds,
        manifest_csv=snakemake.input.manifest,
        vocabulary_json=snakemake.input.vocabulary,
        model_name=snakemake.params.name,
        model_cfg=model_cfg,
        fold=int(snakemake.wildcards.fold),
        checkpoint=snakemake.output.checkpoint,
        history_csv=snakemake.output.history,
        oof_csv=snakemake.output.oof,
        threads=snakemake.threads,
        sampling_weights=snakemake.input.sampling_weights or None,
        image_size=snakemake.params.image_size,
    )

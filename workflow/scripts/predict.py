"""Rule predict: one trained fold's probabilities on each TTA view, OOF and test images."""

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
    from hpa.inference.predict import run_job

    run_job(
        checkpoint=snakemake.input.checkpoint,
        train_npy=train_npy,
        train_index=train_index,
        test_npy=test_npy,
        test_index=test_index,
        folds_csv=snakemake.input.folds,
        views_npz=snakemake.output.views,
        tta_names=snakemake.params.tta,
        crops=snakemake.params.crops,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
    )

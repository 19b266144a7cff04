"""Rule predict: one trained fold's probabilities on each TTA view, OOF and test images."""

from hpa.files import setup_logging
from hpa.training.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# This job's GPUs are chosen before torch is imported, so CUDA only ever sees those.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    from hpa.inference.predict import run_job

    run_job(
        checkpoint=snakemake.input.checkpoint,
        train_npy=snakemake.input.train_npy,
        train_index=snakemake.input.train_index,
        test_npy=snakemake.input.test_npy,
        test_index=snakemake.input.test_index,
        folds_csv=snakemake.input.folds,
        views_npz=snakemake.output.views,
        tta_names=snakemake.params.tta,
        crops=snakemake.params.crops,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
    )

"""Rule predict: TTA probabilities of one trained fold on its OOF and the test images."""

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
        oof_csv=snakemake.output.oof,
        test_csv=snakemake.output.test,
        tta=snakemake.params.tta,
        aggregate=snakemake.params.aggregate,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
    )

"""Rule predict: TTA probabilities of one trained fold on its OOF and the test images."""

from hpa.data.stage import stage
from hpa.files import setup_logging
from hpa.inference.predict import run_job

setup_logging(snakemake.log[0])
# With scratch set, read the caches from node-local copies (a runtime setting: not a param).
train_npy, train_index, test_npy, test_index = stage(
    [snakemake.input.train_npy, snakemake.input.train_index, snakemake.input.test_npy, snakemake.input.test_index],
    snakemake.config.get("scratch"),
)
run_job(
    checkpoint=snakemake.input.checkpoint,
    train_npy=train_npy,
    train_index=train_index,
    test_npy=test_npy,
    test_index=test_index,
    folds_csv=snakemake.input.folds,
    oof_csv=snakemake.output.oof,
    test_csv=snakemake.output.test,
    tta=snakemake.params.tta,
    aggregate=snakemake.params.aggregate,
    batch_size=snakemake.params.batch_size,
    threads=snakemake.threads,
)

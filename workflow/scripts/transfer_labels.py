"""Rule transfer_labels: an ensemble's OOF and test tables with the nearest neighbours' labels transferred."""

from hpa.files import setup_logging
from hpa.postprocess.transfer import run_transfer_job

setup_logging(snakemake.log[0])
run_transfer_job(
    oof_csv=snakemake.input.oof,
    test_csv=snakemake.input.test,
    neighbours_csv=snakemake.input.neighbours,
    manifest_csv=snakemake.input.manifest,
    folds_csv=snakemake.input.folds,
    ensemble=snakemake.params.ensemble,
    oof_out=snakemake.output.oof,
    test_out=snakemake.output.test,
    candidates_csv=snakemake.output.candidates,
    record_json=snakemake.output.record,
)

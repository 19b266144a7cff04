"""Rule combine_views: one fold's OOF and test probability tables for one TTA setting, from its views."""

from hpa.files import setup_logging
from hpa.inference.combine import combine_job

setup_logging(snakemake.log[0])
combine_job(
    views_npz=snakemake.input.views,
    tta=snakemake.wildcards.tta,
    aggregate=snakemake.wildcards.aggregate,
    oof_csv=snakemake.output.oof,
    test_csv=snakemake.output.test,
)

"""Rule clean_external: drop incomplete and duplicate external images, report leaks."""

from hpa.external.clean import clean, read_download, settings_from_config, write_result
from hpa.external.download import read_list
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
result = clean(
    read_download(snakemake.input.records),
    read_list(snakemake.input.list),
    read_download(snakemake.input.source),
    settings_from_config(snakemake.params.external, workers=snakemake.threads),
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
)
write_result(result, snakemake.output, image_dir=snakemake.params.image_dir)

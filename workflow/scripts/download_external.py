"""Rule download_external: fetch the listed HPAv18 images as Kaggle-layout PNGs (resumable)."""

from hpa.external.download import check_failures, download, read_list, settings_from_config
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log[0])
records = download(
    read_list(snakemake.input.list)["Id"],
    image_dir=snakemake.params.image_dir,
    journal_path=snakemake.params.journal,
    # Workers, rate, timeout and retries are read from the config, not params:
    # changing them must not invalidate finished downloads and what follows.
    settings=settings_from_config(snakemake.config["external"]),
)
check_failures(records, snakemake.config["external"]["max_failed_fraction"])
write_csv(records, snakemake.output.records)

"""Rule make_demo_mirror: the demo's HPAv18-style image server, as a folder of tinted JPEGs."""

from pathlib import Path

from hpa.demo.mirror import make_mirror
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
make_mirror(
    Path(snakemake.input.train_csv).parent,
    Path(snakemake.output.images).parent,
    n=snakemake.params.mirror["n"],
    size=snakemake.params.mirror["size"],
    seed=snakemake.params.seed,
    workers=snakemake.threads,
)

"""Rule segment_cells: a cell mask per test image (the embedded segmentation, or cells.masks), with
tables of its cells and of the images it skipped."""

from hpa.cells.segment_job import segment_images
from hpa.classes import Vocabulary
from hpa.data.bit_depth import depths
from hpa.files import read_json, setup_logging
from hpa.tables import read_manifest

setup_logging(snakemake.log.log)
channels = Vocabulary.read(snakemake.input.vocabulary).channels
settings = snakemake.params.cells
segment_images(
    read_manifest(snakemake.input.manifest, split="test"),
    snakemake.output.masks,
    snakemake.output.cells,
    snakemake.output.images,
    channels=channels,
    nucleus=settings["nucleus_channel"],
    body=settings["body_channels"],
    depth=depths(read_json(snakemake.input.bit_depth), channels),
    masks=settings["masks"],
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
    workers=snakemake.threads,
    record=snakemake.log.images,
)

"""Rule cell_crops: every cell of a split's images cut out at its field's own resolution (cells.model)."""

import pandas as pd

from hpa.cells.crop_job import crop_images
from hpa.classes import Vocabulary
from hpa.data.bit_depth import depths
from hpa.files import read_json, setup_logging
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
channels = Vocabulary.read(snakemake.input.vocabulary).channels
settings = snakemake.params.crops
skipped = []  # test images segment_cells could not mask (it recorded why)
if snakemake.wildcards.split == "test":
    images = pd.read_csv(snakemake.input.images, dtype={"Id": str}, keep_default_na=False)
    skipped = images.loc[images["problem"] != "", "Id"].tolist()
crop_images(
    read_manifest(snakemake.input.manifest, split=snakemake.wildcards.split),
    snakemake.output.npy,
    snakemake.output.index,
    channels=channels,
    nucleus=settings["nucleus_channel"],
    body=settings["body_channels"],
    depth=depths(read_json(snakemake.input.bit_depth), channels),
    size=settings["crop"],
    margin=settings["margin"],
    window=settings["window"],
    masks=snakemake.input.get("masks"),
    user_masks=snakemake.input.get("user_masks"),
    skip=skipped,
    max_rejected_fraction=snakemake.params.max_rejected_fraction,
    workers=snakemake.threads,
)

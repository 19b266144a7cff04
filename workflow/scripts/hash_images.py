"""Rule hash_images: perceptual hashes of every train and test image of the source, once."""

from pathlib import Path

import pandas as pd

from hpa.classes import CHANNELS
from hpa.data.bit_depth import depths
from hpa.data.clipping import Clipping, check
from hpa.data.ingest import image_dirs_of
from hpa.external.dedup import hash_source
from hpa.files import read_json, setup_logging, write_csv

setup_logging(snakemake.log[0])
hashes = hash_source(
    # The folders ingest reads (kaggle.full_size), decoded as cache_images decodes them (data.bit_depth).
    Path(snakemake.input.train_csv).parent,
    snakemake.params.hash,
    workers=2 * snakemake.threads,
    image_dirs=image_dirs_of(snakemake.params.full_size),
    id_column=snakemake.params.id_column,
    target_column=snakemake.params.target_column,
    # The atlas's external images are compared with the source's, so its four stains (HPA only).
    depth=depths(read_json(snakemake.input.bit_depth), CHANNELS),
    clipping=Clipping(**snakemake.params.clipping),
    clipped_path=snakemake.output.clipped,
)
clipped = pd.read_csv(snakemake.output.clipped, dtype={"Id": str})
for split, rows in hashes.groupby("split"):
    check(clipped[clipped["Id"].isin(rows["Id"])], len(rows), snakemake.params.max_rejected_fraction,
          f"{split} images (hashed)")
write_csv(hashes, snakemake.output.hashes)

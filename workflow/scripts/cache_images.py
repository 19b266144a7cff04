"""Rule cache_images: decode one split's images once into a uint8 memory-mapped array, listing those
the bit-depth rule clips (and stopping when they are too many)."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.data.bit_depth import depths
from hpa.data.cache import build_cache
from hpa.data.clipping import Clipping, check
from hpa.files import read_json, setup_logging
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
channels = Vocabulary.read(snakemake.input.vocabulary).channels
index = build_cache(
    read_manifest(snakemake.input.manifest, split=snakemake.wildcards.split),
    snakemake.output.npy,
    snakemake.output.index,
    size=snakemake.params.size,
    channels=channels,
    workers=snakemake.threads,
    depth=depths(read_json(snakemake.input.bit_depth), channels),
    fit=snakemake.params.fit,
    clipping=Clipping(**snakemake.params.clipping),
    clipped_path=snakemake.output.clipped,
)
check(pd.read_csv(snakemake.output.clipped, dtype={"Id": str}), len(index), snakemake.params.max_rejected_fraction,
      f"{snakemake.wildcards.split} images")

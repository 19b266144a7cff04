"""Rule cache_images: decode one split's images once into a uint8 memory-mapped array."""

from hpa.tables import read_manifest
from hpa.data.cache import build_cache
from hpa.data.images import BitDepth
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
build_cache(
    read_manifest(snakemake.input.manifest, split=snakemake.wildcards.split),
    snakemake.output.npy,
    snakemake.output.index,
    size=snakemake.params.size,
    workers=snakemake.threads,
    depth=BitDepth(**snakemake.params.bit_depth),
)

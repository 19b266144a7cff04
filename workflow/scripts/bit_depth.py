"""Rule bit_depth: how each channel's high-bit-depth images become 8-bit, measured on a sample of them."""

from hpa.classes import Vocabulary
from hpa.data.bit_depth import resolve, sample_files, sheet_files
from hpa.data.images import BitDepth
from hpa.files import setup_logging, write_json

setup_logging(snakemake.log[0])
channels = Vocabulary.read(snakemake.input.vocabulary).channels
# A sample sheet names each image's files; a Kaggle-layout folder holds them as {Id}_{channel}.{ext}.
if "samples" in snakemake.input.keys():
    files = sheet_files(snakemake.input.samples, channels)
else:
    files = sample_files(snakemake.input.images, channels)
write_json(resolve(BitDepth(**snakemake.params.bit_depth), files), snakemake.output.bit_depth)

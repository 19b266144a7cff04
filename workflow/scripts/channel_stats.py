"""Rule channel_stats: per-channel mean and std of the training images."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.data.cache import write_stats
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
channels = Vocabulary.read(snakemake.input.vocabulary).channels
write_stats(snakemake.input.npy, pd.read_csv(snakemake.input.index), snakemake.output.stats, channels)

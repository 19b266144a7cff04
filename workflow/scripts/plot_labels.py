"""Rule plot_labels: the co-occurrence heatmap and the class-frequency chart."""

import pandas as pd
import yaml

from hpa.classes import Vocabulary
from hpa.files import setup_logging
from hpa.labels.cooccurrence import read_matrix
from hpa.labels.figures import class_frequency_chart, cooccurrence_heatmap

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
with open(snakemake.input.class_groups) as fh:
    groups = yaml.safe_load(fh)
cooccurrence_heatmap(read_matrix(snakemake.input.cooccurrence_counts), groups, names, snakemake.output.heatmap)
class_frequency_chart(pd.read_csv(snakemake.input.class_counts), snakemake.output.frequency)

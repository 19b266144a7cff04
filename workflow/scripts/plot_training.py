"""Rule plot_training: learning curves of one model over its folds."""

import pandas as pd

from hpa.files import setup_logging
from hpa.training.curves import training_curves

setup_logging(snakemake.log[0])
histories = {fold: pd.read_csv(path) for fold, path in zip(snakemake.params.folds, snakemake.input.histories)}
training_curves(histories, snakemake.wildcards.model, snakemake.output.curves)

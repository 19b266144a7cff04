"""Rule front_page: every ensemble's scores as a figure and a table for the report's front page."""

from pathlib import Path

import pandas as pd

from hpa.files import setup_logging, write_text
from hpa.postprocess.figures import scores_figure
from hpa.postprocess.front_page import scores_page

setup_logging(snakemake.log[0])
comparison = pd.read_csv(snakemake.input.comparison)
scores_figure(comparison, snakemake.output.figure)
write_text(scores_page(comparison, Path(snakemake.output.figure).read_bytes()), snakemake.output.page)

"""Rule plot_confusion: for each true class, the classes predicted instead (OOF; test where labelled)."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import setup_logging
from hpa.postprocess.figures import confusion_figure

setup_logging(snakemake.log[0])
ensemble = snakemake.wildcards.ensemble
tables = {f"{ensemble}: out-of-fold images (honest predictions)":
          pd.read_csv(snakemake.input.oof, dtype=str, keep_default_na=False)}
test = pd.read_csv(snakemake.input.test, dtype=str, keep_default_na=False)
if "Target" in test:  # test labels exist (the demo)
    tables[f"{ensemble}: test images"] = test
confusion_figure(tables, Vocabulary.read(snakemake.input.vocabulary).classes, snakemake.output.figure)

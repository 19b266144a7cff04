"""Rule plot_thresholds: F1-vs-threshold curves and per-class F1 bars of an ensemble."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import read_json, setup_logging
from hpa.postprocess.threshold_figures import per_class_f1_bars, threshold_curves
from hpa.tables import labels_to_matrix, prob_matrix, read_manifest

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
oof = pd.read_csv(snakemake.input.oof, dtype={"Id": str})
labels = read_manifest(snakemake.input.manifest, split="train").set_index("Id")
y = labels_to_matrix(labels.loc[oof["Id"], "Target"], len(names))
record = read_json(snakemake.input.thresholds)
threshold_curves(prob_matrix(oof, snakemake.input.oof), y, record["thresholds"], names, snakemake.output.curves)
per_class_f1_bars(
    pd.read_csv(snakemake.input.per_class),
    f"{snakemake.wildcards.ensemble}: honest OOF F1 per class ({record['method']} thresholds fitted on the other folds)",
    snakemake.output.f1_bars,
)

"""Rule fit_thresholds: thresholds fitted on an ensemble's OOF probabilities, every method compared,
and the OOF prediction table (honest predictions beside the true labels)."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv, write_json
from hpa.postprocess.submission import fit_thresholds
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
ens = snakemake.params.ensemble
record, per_class, methods, predictions = fit_thresholds(
    pd.read_csv(snakemake.input.oof, dtype={"Id": str}),
    read_manifest(snakemake.input.manifest, split="train"),
    pd.read_csv(snakemake.input.folds, dtype={"Id": str}),
    ens["threshold"],
    classes=Vocabulary.read(snakemake.input.vocabulary).classes,
    top1=ens["top1"],
    shrink_factor=ens["shrink"],
    shrink_toward=ens["shrink_toward"],
)
write_csv(per_class, snakemake.output.per_class)
write_csv(methods, snakemake.output.methods)
write_csv(predictions, snakemake.output.predictions)
write_json(record, snakemake.output.thresholds)

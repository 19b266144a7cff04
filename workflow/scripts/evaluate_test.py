"""Rule evaluate_test (where the test labels are known): true test macro F1 beside the OOF estimates,
per threshold method."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import read_json, setup_logging, write_csv, write_json
from hpa.postprocess.evaluation import evaluate_on_test
from hpa.tables import read_canonical_labels, read_manifest

setup_logging(snakemake.log[0])
N_CLASSES = Vocabulary.read(snakemake.input.vocabulary).n_classes
summary, per_method = evaluate_on_test(
    submission=pd.read_csv(snakemake.input.submission, dtype=str, keep_default_na=False),
    record=read_json(snakemake.input.thresholds),
    oof=pd.read_csv(snakemake.input.oof, dtype={"Id": str}),
    test=pd.read_csv(snakemake.input.test, dtype={"Id": str}),
    labels=read_manifest(snakemake.input.manifest, split="train"),
    folds=pd.read_csv(snakemake.input.folds, dtype={"Id": str}),
    methods=pd.read_csv(snakemake.input.methods),
    truth=read_canonical_labels(snakemake.input.test_labels, N_CLASSES),
)
write_csv(per_method, snakemake.output.methods)
write_json(summary, snakemake.output.evaluation)

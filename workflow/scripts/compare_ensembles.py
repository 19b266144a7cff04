"""Rule compare_ensembles: every ensemble's OOF, honest and (where the test labels are known) test
macro F1 with intervals, side by side."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import read_json, setup_logging, write_csv
from hpa.postprocess.evaluation import comparison_table
from hpa.postprocess.submission import submission_matrices
from hpa.tables import read_canonical_labels

setup_logging(snakemake.log[0])
VOCAB = Vocabulary.read(snakemake.input.vocabulary)
names = list(snakemake.params.models)
evaluations = snakemake.input.evaluations or [None] * len(names)
ensembles = {
    name: {
        "models": snakemake.params.models[name],
        # The benchmark files of its jobs are the named inputs "{kind}_tsv_{ensemble}" (common.smk).
        "train_tsv": list(snakemake.input[f"train_tsv_{name}"]),
        "predict_tsv": list(snakemake.input[f"predict_tsv_{name}"]),
        "thresholds": read_json(record),
        "evaluation": read_json(evaluation) if evaluation else None,
    }
    for name, record, evaluation in zip(names, snakemake.input.thresholds, evaluations)
}
predictions, y_test = None, None
if snakemake.input.submissions:
    truth = read_canonical_labels(snakemake.input.test_labels, VOCAB.n_classes)
    matrices = {
        name: submission_matrices(pd.read_csv(path, dtype=str, keep_default_na=False), truth, VOCAB.n_classes)
        for name, path in zip(names, snakemake.input.submissions)
    }
    predictions = {name: pred for name, (_, pred) in matrices.items()}
    y_test = next(iter(matrices.values()))[0]
write_csv(comparison_table(ensembles, predictions, y_test), snakemake.output.table)

"""Rule make_submission: thresholded test predictions in Kaggle format, and as a table with the
class names (and the true labels where they are known: results/data/test_labels.csv)."""

import pandas as pd

from hpa.classes import Vocabulary
from hpa.files import read_json, setup_logging, write_csv
from hpa.postprocess.predictions import submission_table
from hpa.postprocess.submission import submission
from hpa.tables import read_canonical_labels, read_manifest

setup_logging(snakemake.log[0])
VOCAB = Vocabulary.read(snakemake.input.vocabulary)
test_ids = pd.concat(
    [read_manifest(snakemake.input.manifest, split="test")["Id"],
     read_manifest(snakemake.input.rejected, split="test")["Id"]]
)
test = pd.read_csv(snakemake.input.test, dtype={"Id": str})
sub = submission(
    test,
    read_json(snakemake.input.thresholds),
    sorted(set(test_ids)),  # once each: a sample sheet's repeated Id is rejected on each of its rows
)
write_csv(sub, snakemake.output.submission)
truth = read_canonical_labels(snakemake.input.test_labels, VOCAB.n_classes) if snakemake.input.test_labels else None
write_csv(submission_table(sub, test, VOCAB.classes, truth), snakemake.output.predictions)

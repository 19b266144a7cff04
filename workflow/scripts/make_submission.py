"""Rule make_submission: thresholded test predictions in Kaggle format."""

import pandas as pd

from hpa.tables import read_manifest
from hpa.postprocess.submission import submission
from hpa.files import read_json, setup_logging, write_csv

setup_logging(snakemake.log[0])
test_ids = pd.concat(
    [read_manifest(snakemake.input.manifest, split="test")["Id"],
     read_manifest(snakemake.input.rejected, split="test")["Id"]]
)
sub = submission(
    pd.read_csv(snakemake.input.test, dtype={"Id": str}),
    read_json(snakemake.input.thresholds),
    sorted(test_ids),
)
write_csv(sub, snakemake.output.submission)

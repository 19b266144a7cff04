"""Rule evaluate_segmentation (where a cell truth exists, as the demo's): matched-cell F1 of the masks
used against a disk per nucleus."""

import pandas as pd

from hpa.cells.evaluate_job import evaluate_segmentation
from hpa.classes import Vocabulary
from hpa.data.bit_depth import depths
from hpa.files import read_json, setup_logging, write_json
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
vocab = Vocabulary.read(snakemake.input.vocabulary)
result = evaluate_segmentation(
    truth_dir=snakemake.params.truth,
    images=pd.read_csv(snakemake.input.images, dtype={"Id": str}, keep_default_na=False),
    masks_dir=snakemake.input.masks,
    manifest=read_manifest(snakemake.input.manifest, split="test"),
    channels=vocab.channels,
    nucleus=snakemake.params.nucleus,
    depth=depths(read_json(snakemake.input.bit_depth), vocab.channels),
    n_classes=vocab.n_classes,
)
write_json(result, snakemake.output.evaluation)

"""Rule cell_gallery: per class, a page of test images with an ensemble's class map and labelled cells."""

import pandas as pd

from hpa.cells.gallery_job import write_gallery
from hpa.classes import Vocabulary
from hpa.data.bit_depth import depths
from hpa.files import read_json, setup_logging
from hpa.postprocess.submission import applied_thresholds
from hpa.tables import prob_matrix, read_canonical_labels, read_manifest

setup_logging(snakemake.log[0])
vocab = Vocabulary.read(snakemake.input.vocabulary)
probs = pd.read_csv(snakemake.input.test, dtype={"Id": str})
thresholds, _ = applied_thresholds(read_json(snakemake.input.thresholds), prob_matrix(probs, "test probabilities"))
index = pd.read_csv(snakemake.input.cache_index, dtype={"Id": str}, keep_default_na=False)
write_gallery(
    out_dir=snakemake.output.gallery,
    vocab=vocab,
    probs=probs,
    thresholds=thresholds,
    truth=read_canonical_labels(snakemake.input.test_labels, vocab.n_classes) if snakemake.input.test_labels else None,
    maps_npz=snakemake.input.maps,
    scores=pd.read_csv(snakemake.input.scores, dtype={"Id": str}, keep_default_na=False),
    masks_dir=snakemake.input.masks,
    manifest=read_manifest(snakemake.input.manifest, split="test"),
    depth=depths(read_json(snakemake.input.bit_depth), vocab.channels),
    fits=dict(zip(index["Id"], index["fit"])),
    per_kind=snakemake.params.per_kind,
)

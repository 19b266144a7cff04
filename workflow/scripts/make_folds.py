"""Rule make_folds: multilabel-stratified folds of the training images."""

from hpa.classes import Vocabulary
from hpa.data.folds import make_folds, read_groups
from hpa.files import setup_logging, write_csv
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
folds = make_folds(
    read_manifest(snakemake.input.manifest, split="train"),
    n_folds=snakemake.params.n_folds,
    seed=snakemake.params.seed,
    # Duplicate clusters share a fold: the source's own (results/data/duplicates.csv) and, with external
    # images, the cleaning stage's.
    groups=read_groups(snakemake.input.source_duplicates, *([snakemake.input.duplicates]
                                                            if snakemake.input.get("duplicates") else [])),
    n_classes=Vocabulary.read(snakemake.input.vocabulary).n_classes,
)
write_csv(folds, snakemake.output.folds)

"""Rule labels: every listed training image's labels in canonical form, for the label analysis."""

from hpa.classes import Vocabulary
from hpa.data.label_files import train_labels
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log[0])
table = train_labels(
    snakemake.params.source,
    Vocabulary.read(snakemake.input.vocabulary),
    train_csv=snakemake.input.get("train_csv"),
    samples=snakemake.input.get("samples"),
    id_column=snakemake.params.id_column,
    target_column=snakemake.params.target_column,
)
write_csv(table, snakemake.output.labels)

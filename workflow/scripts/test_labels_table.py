"""Rule test_labels: the test images' true labels in canonical form, whatever file holds them."""

from hpa.classes import Vocabulary
from hpa.data.label_files import true_test_labels
from hpa.files import setup_logging, write_csv

setup_logging(snakemake.log[0])
table = true_test_labels(
    Vocabulary.read(snakemake.input.vocabulary),
    truth=snakemake.input.get("truth"),
    test_ids=snakemake.input.get("sample_submission"),
    samples=snakemake.input.get("samples"),
    id_column=snakemake.params.id_column,
    target_column=snakemake.params.target_column,
)
write_csv(table, snakemake.output.labels)

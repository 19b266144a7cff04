"""Rule test_labels: the test images' true labels in canonical form, whatever file holds them."""

from hpa.classes import Vocabulary
from hpa.data.label_files import kept_test_labels, true_test_labels
from hpa.files import setup_logging, write_csv
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
table = true_test_labels(
    Vocabulary.read(snakemake.input.vocabulary),
    truth=snakemake.input.get("truth"),
    test_ids=snakemake.input.get("sample_submission"),
    samples=snakemake.input.get("samples"),
    id_column=snakemake.params.id_column,
    target_column=snakemake.params.target_column,
)
# Scored: the test images ingest kept (the manifest's), as the summary counts them.
kept = read_manifest(snakemake.input.manifest, split="test")["Id"]
write_csv(kept_test_labels(table, kept), snakemake.output.labels)

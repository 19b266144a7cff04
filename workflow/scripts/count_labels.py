"""Rule count_labels: class counts and co-occurrence matrices, for all labels and per source."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv
from hpa.labels.cooccurrence import class_counts_table, cooccurrence_tables, read_label_sources, subsets, table_key

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
sources = snakemake.params.sources
labels = read_label_sources({source: snakemake.input[source] for source in sources}, len(names))
write_csv(class_counts_table(labels, sources, names), snakemake.output.class_counts)
for subset, part in subsets(labels).items():
    for name, table in cooccurrence_tables(part, names).items():
        write_csv(table, snakemake.output[table_key(subset, name)])

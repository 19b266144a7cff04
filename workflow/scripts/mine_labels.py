"""Rule mine_labels: frequent itemsets and association rules, for all labels and per source."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv
from hpa.labels.cooccurrence import mining_tables, read_label_sources, subsets, table_key

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
labels = read_label_sources({source: snakemake.input[source] for source in snakemake.params.sources}, len(names))
for subset, part in subsets(labels).items():
    for name, table in mining_tables(part, names, **snakemake.params.mining).items():
        write_csv(table, snakemake.output[table_key(subset, name)])

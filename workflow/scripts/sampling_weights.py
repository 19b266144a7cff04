"""Rule sampling_weights: per-class oversampling weights for the training stage."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv
from hpa.labels.cooccurrence import label_matrix, read_label_sources, sampling_weights

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
labels = read_label_sources({source: snakemake.input[source] for source in snakemake.params.sources}, len(names))
weights = sampling_weights(label_matrix(labels, len(names)).sum(axis=0), len(labels), names,
                           power=snakemake.params.power, cap=snakemake.params.cap)
write_csv(weights, snakemake.output.weights)

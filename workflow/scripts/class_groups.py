"""Rule class_groups: data-driven class groups from the co-occurrence counts, for the group ensemble."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging
from hpa.labels.cooccurrence import class_groups, read_matrix, write_yaml

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
groups = class_groups(read_matrix(snakemake.input.counts), snakemake.params.n_groups, snakemake.params.method, names)
write_yaml(groups, snakemake.output.groups)

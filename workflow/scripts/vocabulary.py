"""Rule vocabulary: write the dataset's classes and channels (checked when the DAG was built)."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
Vocabulary.from_json(snakemake.params.vocabulary).write(snakemake.output[0])

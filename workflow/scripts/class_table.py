"""Rule class_table: every class's number, name and frequency in the training labels."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv, write_text
from hpa.postprocess.front_page import class_table, classes_page
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
names = Vocabulary.read(snakemake.input.vocabulary).classes
table = class_table(read_manifest(snakemake.input.manifest, split="train"), names)
write_csv(table, snakemake.output.table)
write_text(classes_page(table), snakemake.output.page)

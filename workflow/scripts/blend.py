"""Rule blend: combine an ensemble's folds and models into OOF and test probabilities."""

import yaml

from hpa.data import read_manifest
from hpa.ensemble import combine
from hpa.io import setup_logging, write_csv, write_json

setup_logging(snakemake.log[0])
ens = snakemake.params.ensemble
groups = None
if snakemake.input.groups:
    with open(snakemake.input.groups) as fh:
        groups = [g["classes"] for g in yaml.safe_load(fh)["groups"]]
oof, test, how = combine(
    snakemake.params.members,
    read_manifest(snakemake.input.manifest, split="train"),
    combine_as=ens["combine"],
    weights=ens["weights"],
    groups=groups,
)
write_csv(oof, snakemake.output.oof)
write_csv(test, snakemake.output.test)
write_json(how, snakemake.output.how)

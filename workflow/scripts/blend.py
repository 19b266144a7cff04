"""Rule blend: combine an ensemble's folds and models into OOF and test probabilities."""

from hpa.classes import Vocabulary
from hpa.files import setup_logging, write_csv, write_json
from hpa.postprocess.blend import combine, resolve_groups
from hpa.tables import read_manifest

setup_logging(snakemake.log[0])
vocab = Vocabulary.read(snakemake.input.vocabulary)
ens = snakemake.params.ensemble
groups = None
if ens["combine"] == "groups":
    groups = resolve_groups(ens["groups"], vocab, snakemake.input.groups or None)
# Each member's per-fold tables are the named inputs "oof_{model}" and "test_{model}" (common.smk).
members = {m: {kind: list(snakemake.input[f"{kind}_{m}"]) for kind in ("oof", "test")} for m in ens["models"]}
oof, test, how = combine(
    members,
    read_manifest(snakemake.input.manifest, split="train"),
    combine_as=ens["combine"],
    weights=ens["weights"],
    groups=groups,
    classes=vocab.classes,
)
write_csv(oof, snakemake.output.oof)
write_csv(test, snakemake.output.test)
write_json(how, snakemake.output.how)

"""Rule predict_new: a trained ensemble's probabilities and classes for a folder of new images."""

import torch

from hpa.data.images import BitDepth
from hpa.files import read_json, setup_logging, write_csv
from hpa.inference.new_images import predict_folder

setup_logging(snakemake.log[0])
torch.set_num_threads(max(1, snakemake.threads))
ens = snakemake.params.ensemble
n_folds = len(snakemake.params.folds)
paths = snakemake.input.checkpoints
checkpoints = {m: paths[i * n_folds:(i + 1) * n_folds] for i, m in enumerate(ens["models"])}
table = predict_folder(
    snakemake.params.folder,
    checkpoints,
    read_json(snakemake.input.combination),
    read_json(snakemake.input.thresholds),
    tta=ens["tta"],
    aggregate=ens["aggregate"],
    batch_size=snakemake.params.batch_size,
    depth=BitDepth(**snakemake.params.bit_depth),
)
write_csv(table, snakemake.output.predictions)

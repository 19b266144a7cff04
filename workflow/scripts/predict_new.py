"""Rule predict_new: a trained ensemble's probabilities and classes for a folder of new images."""

from hpa.files import read_json, setup_logging, write_csv
from hpa.runtime.gpu_lease import lease_gpus

setup_logging(snakemake.log[0])
# This job's GPU is chosen before torch is imported, so CUDA only ever sees that one.
with lease_gpus(snakemake.resources.gpu, holder=snakemake.log[0]):
    import torch

    from hpa.data.images import BitDepth
    from hpa.inference.new_images import predict_folder

    torch.set_num_threads(max(1, snakemake.threads))
    ens = snakemake.params.ensemble
    n_folds = len(snakemake.params.folds)
    paths = snakemake.input.checkpoints
    checkpoints = {m: paths[i * n_folds:(i + 1) * n_folds] for i, m in enumerate(ens["models"])}
    table = predict_folder(
        snakemake.input.folder,
        checkpoints,
        read_json(snakemake.input.combination),
        read_json(snakemake.input.thresholds),
        tta=ens["tta"],
        aggregate=ens["aggregate"],
        batch_size=snakemake.params.batch_size,
        depth=BitDepth(**snakemake.params.bit_depth),
        crops=snakemake.params.crops,
    )
    write_csv(table, snakemake.output.predictions)

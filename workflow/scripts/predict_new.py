"""Rule predict_new: a trained ensemble's probabilities and classes for a folder of new images."""

from hpa.files import read_json, write_csv
from hpa.runtime.gpu_job import gpu_job

with gpu_job(snakemake):
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

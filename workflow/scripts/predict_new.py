"""Rule predict_new: a trained ensemble's probabilities and classes for a folder of new images."""

from hpa.files import read_json, write_csv
from hpa.runtime.gpu_job import gpu_job

with gpu_job(snakemake):
    import torch

    from hpa.data.images import BitDepth
    from hpa.new_images.ensemble import predict_folder

    ens = snakemake.params.ensemble
    torch.set_num_threads(max(1, snakemake.threads))
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
        workers=snakemake.threads,
    )
    write_csv(table, snakemake.output.predictions)

"""Rule predict_new: a trained ensemble's probabilities and classes for a folder of new images."""

from hpa.files import read_json, write_csv
from hpa.runtime.gpu_job import gpu_job

with gpu_job(snakemake):
    import torch

    from hpa.data.bit_depth import depths
    from hpa.data.clipping import Clipping, check
    from hpa.data.clipping import table as clipped_table
    from hpa.new_images.ensemble import predict_folder
    from hpa.runtime.device import compute_threads

    ens = snakemake.params.ensemble
    torch.set_num_threads(compute_threads(snakemake.threads))
    n_folds = len(snakemake.params.folds)
    paths = snakemake.input.checkpoints
    bit_depth = read_json(snakemake.input.bit_depth)
    checkpoints = {m: paths[i * n_folds:(i + 1) * n_folds] for i, m in enumerate(ens["models"])}
    clipped = {}
    table = predict_folder(
        snakemake.input.folder,
        checkpoints,
        read_json(snakemake.input.combination),
        read_json(snakemake.input.thresholds),
        tta=ens["tta"],
        aggregate=ens["aggregate"],
        batch_size=snakemake.params.batch_size,
        # Decoded as the cache decoded the training images: bit_depth.json's rule per channel, data.fit.
        depth=depths(bit_depth, bit_depth["channels"]),
        fit=snakemake.params.fit,
        crops=snakemake.params.crops,
        workers=snakemake.threads,
        clipping=Clipping(**snakemake.params.clipping),
        clipped=clipped,
    )
    # Clipped images are named in the table's clipped column and on the terminal; too many stop the job.
    check(clipped_table([r for rows in clipped.values() for r in rows]), len(table),
          snakemake.params.max_rejected_fraction, f"new images in {snakemake.input.folder}")
    write_csv(table, snakemake.output.predictions)

"""Rule new_image_panels: per new image, where the ensemble sees its predicted classes and in which cells."""

from hpa.files import InputError, read_json
from hpa.runtime.gpu_job import gpu_job

cells = snakemake.params.cells
if not cells:
    raise InputError("new_image_panels: cells.enabled is false, so the pipeline has no cell settings; "
                     "set cells.enabled: true (and cells.nucleus_channel / body_channels for your stains)")
with gpu_job(snakemake):
    import pandas as pd
    import torch

    from hpa.data.bit_depth import depths
    from hpa.new_images.panels import write_panels
    from hpa.runtime.device import compute_threads

    torch.set_num_threads(compute_threads(snakemake.threads))
    ens = snakemake.params.ensemble
    n_folds = len(snakemake.params.folds)
    paths = snakemake.input.checkpoints
    bit_depth = read_json(snakemake.input.bit_depth)
    write_panels(
        snakemake.input.folder,
        pd.read_csv(snakemake.input.predictions, dtype={"Id": str}, keep_default_na=False),
        {m: paths[i * n_folds : (i + 1) * n_folds] for i, m in enumerate(ens["models"])},
        read_json(snakemake.input.thresholds),
        snakemake.output.panels,
        nucleus=cells["nucleus_channel"],
        body=cells["body_channels"],
        depth=depths(bit_depth, bit_depth["channels"]),
        fit=snakemake.params.fit,
        tta=cells["tta"],
        method=cells["method"],
        weight=cells["blend_weight"],
    )

"""Rule predict_cell_model: one fold's cell model on every test cell, over its TTA views."""

from hpa.runtime.gpu_job import gpu_job

with gpu_job(snakemake, [snakemake.input.test_npy, snakemake.input.test_index]) as (test_npy, test_index):
    from hpa.dihedral import transforms_for
    from hpa.inference.cell_model import run_job

    run_job(
        checkpoint=snakemake.input.checkpoint,
        test_npy=test_npy,
        test_index=test_index,
        out_npz=snakemake.output.cells,
        views=transforms_for(snakemake.params.tta),
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
    )

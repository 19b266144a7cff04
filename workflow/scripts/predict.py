"""Rule predict: one trained fold's probabilities on each TTA view, OOF and test images."""

from hpa.runtime.gpu_job import gpu_job

caches = [snakemake.input.train_npy, snakemake.input.train_index, snakemake.input.test_npy, snakemake.input.test_index]
with gpu_job(snakemake, caches) as (train_npy, train_index, test_npy, test_index):
    from hpa.dihedral import transforms_for
    from hpa.inference.per_cell import CellOutputs
    from hpa.inference.predict import run_job

    run_job(
        checkpoint=snakemake.input.checkpoint,
        train_npy=train_npy,
        train_index=train_index,
        test_npy=test_npy,
        test_index=test_index,
        folds_csv=snakemake.input.folds,
        views_npz=snakemake.output.views,
        tta_names=snakemake.params.tta,
        crops=snakemake.params.crops,
        batch_size=snakemake.params.batch_size,
        threads=snakemake.threads,
        cells=CellOutputs(
            maps=snakemake.output.maps,
            cells=snakemake.output.cells,
            masks=snakemake.input.masks,
            views=tuple(transforms_for(snakemake.params.cells["tta"])),
            dilate=snakemake.params.cells["dilate"],
        )
        if snakemake.params.cells
        else None,
    )

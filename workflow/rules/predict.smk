# Test-time-augmented probabilities of each trained fold, on its out-of-fold
# images (for threshold fitting) and on the test images. predict runs the model once
# per fold on every view its ensembles need; combine_views makes each ensemble's
# mean or max from those views without running the model again.


rule predict:
    input:
        **cell_inputs_of_predict(),
        checkpoint="results/models/{model}/fold{fold}/model.pt",
        train_npy="results/cache/train.npy",
        train_index="results/cache/train.csv",
        test_npy="results/cache/test.npy",
        test_index="results/cache/test.csv",
        folds="results/splits/folds.csv",
    output:
        **cell_outputs_of_predict(),
        views="results/predictions/{model}/fold{fold}/views.npz",
    log:
        "logs/predict/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/predict/{model}/fold{fold}.tsv"
    retries: 1  # preemptible GPU partitions; the job is short, so it simply starts over
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        # TTA at predict's batch size: a share of a GPU for a small model (resources.smk).
        **gpu_resources(
            lambda wildcards: model_work(
                MODELS[wildcards.model],
                training=False,
                batch_size=config["predict"]["batch_size"],
                plain=not (CELLS and CELLS["dilate"]),
            )
        ),
        mem_mb=INFERENCE_MEM_MB,
        runtime=CACHE_READ_RUNTIME,
    params:
        tta=get_model_tta,
        crops=config["predict"]["crops"],
        batch_size=config["predict"]["batch_size"],
        cells={k: CELLS[k] for k in ("tta", "dilate")} if CELLS else None,
    script:
        "../scripts/predict.py"


rule combine_views:
    input:
        views="results/predictions/{model}/fold{fold}/views.npz",
    output:
        oof="results/predictions/{model}/fold{fold}/{tta}_{aggregate}/oof.csv",
        test="results/predictions/{model}/fold{fold}/{tta}_{aggregate}/test.csv",
    log:
        "logs/combine_views/{model}/fold{fold}/{tta}_{aggregate}.log",
    benchmark:
        "benchmarks/combine_views/{model}/fold{fold}/{tta}_{aggregate}.tsv"
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/combine_views.py"

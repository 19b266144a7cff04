# Test-time-augmented probabilities of each trained fold, on its out-of-fold
# images (for threshold fitting) and on the test images. predict runs the model once
# per fold on every view its ensembles need; combine_views makes each ensemble's
# mean or max from those views without running the model again.


rule predict:
    input:
        checkpoint="results/models/{model}/fold{fold}/model.pt",
        train_npy="results/cache/train.npy",
        train_index="results/cache/train.csv",
        test_npy="results/cache/test.npy",
        test_index="results/cache/test.csv",
        folds="results/splits/folds.csv",
    output:
        views="results/predictions/{model}/fold{fold}/views.npz",
    log:
        "logs/predict/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/predict/{model}/fold{fold}.tsv"
    retries: 1  # preemptible GPU partitions; the job is short, so it simply starts over
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        mem_mb=INFERENCE_MEM_MB,
        runtime=CACHE_READ_RUNTIME,
        gpu=1,
    params:
        tta=model_tta,
        crops=config["predict"]["crops"],
        batch_size=config["predict"]["batch_size"],
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


rule predict_new:
    # Not part of `all`: run a trained ensemble on a folder of new images, e.g.
    #   snakemake --cores 4 results/new_images/both.csv --config new_images=path/to/folder
    input:
        checkpoints=lambda wildcards: [
            f"results/models/{m}/fold{k}/model.pt" for m in ENSEMBLES[wildcards.ensemble]["models"] for k in FOLDS
        ],
        thresholds="results/thresholds/{ensemble}.json",
        combination="results/ensembles/{ensemble}/combination.json",
        folder=config["new_images"],
    output:
        predictions="results/new_images/{ensemble}.csv",
    log:
        "logs/predict_new/{ensemble}.log",
    benchmark:
        "benchmarks/predict_new/{ensemble}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        # Sized by the checkpoints: a folder's size is not its images' (raise runtime in the
        # profile's set-resources for a large folder)
        mem_mb=INFERENCE_MEM_MB,
        runtime=sized(60, per_input_mb=2 / 1024),
        gpu=1,
    params:
        ensemble=lambda wildcards: ENSEMBLES[wildcards.ensemble],
        folds=FOLDS,
        batch_size=config["predict"]["batch_size"],
        crops=config["predict"]["crops"],
        bit_depth=config["data"]["bit_depth"],
    script:
        "../scripts/predict_new.py"

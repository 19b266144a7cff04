# One training job per {model} x {fold}. The model's whole config is a param,
# so editing one model retrains that model only.


rule train:
    input:
        npy="results/cache/train.npy",
        index="results/cache/train.csv",
        stats="results/cache/stats.json",
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
    output:
        checkpoint="results/models/{model}/fold{fold}/model.pt",
        history="results/models/{model}/fold{fold}/history.csv",
        oof="results/models/{model}/fold{fold}/oof.csv",
    params:
        model=lambda wildcards: MODELS[wildcards.model],
    log:
        "logs/train/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/train/{model}/fold{fold}.tsv"
    threads: 4
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train.py"

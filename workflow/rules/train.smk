# One training job per {model} x {fold}. The model's config is a param, so editing one
# model retrains that model only; its runtime-only keys (common.smk) are read from the config.


rule train:
    input:
        npy="results/cache/train.npy",
        index="results/cache/train.csv",
        stats="results/cache/stats.json",
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
        sampling_weights=get_sampling_weights,
    output:
        checkpoint="results/models/{model}/fold{fold}/model.pt",
        history="results/models/{model}/fold{fold}/history.csv",
        oof="results/models/{model}/fold{fold}/oof.csv",
    log:
        "logs/train/{model}/fold{fold}.log",
    benchmark:
        "benchmarks/train/{model}/fold{fold}.tsv"
    # A preempted or node-failed job (hours on a cluster GPU) is resubmitted and resumes
    # from its last checkpoint; a deterministic error fails again and stops after these.
    retries: 2
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        # One GPU per training process (processes > 1: DistributedDataParallel within the job),
        # or a share of one for a model too small to keep a GPU busy (resources.smk).
        **gpu_resources(lambda wildcards: model_work(MODELS[wildcards.model], training=True)),
        mem_mb=TRAINING_MEM_MB,
        runtime=training_runtime(lambda wildcards: MODELS[wildcards.model]["epochs"]),
    params:
        model=lambda wildcards: {k: v for k, v in MODELS[wildcards.model].items() if k not in RUNTIME_KEYS},
        name=lambda wildcards: wildcards.model,
        entry=lambda wildcards: ["models", wildcards.model],
        image_size=config["data"]["image_size"],
    script:
        "../scripts/train.py"


rule plot_training:
    input:
        histories=expand("results/models/{{model}}/fold{fold}/history.csv", fold=FOLDS),
    output:
        curves=report(
            "results/models/{model}/curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    log:
        "logs/plot_training/{model}.log",
    benchmark:
        "benchmarks/plot_training/{model}.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        folds=FOLDS,
    script:
        "../scripts/plot_training.py"

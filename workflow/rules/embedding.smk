# Metric-learning label transfer (the 1st place's): an ArcFace embedding per fold, each
# image's nearest training image, and for ensembles with transfer: true the neighbours'
# labels transferred above a cosine threshold fitted out-of-fold. Also a learned
# duplicate detector beside the perceptual hashes.

EMBEDDING = config["embedding"]
# SEARCH_KEYS (hpa.config.checks, imported in common.smk) are read by embed and
# embedding_duplicates only, so that changing them retrains nothing.
# What transfer_labels reads of an ensemble: its transfer keys and the threshold fit it scores under.
TRANSFER_KEYS = ("transfer_mode", "transfer_weight", "threshold", "top1", "shrink", "shrink_toward")


rule train_embedding:
    input:
        npy="results/cache/train.npy",
        index="results/cache/train.csv",
        stats="results/cache/stats.json",
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
    output:
        checkpoint="results/embedding/fold{fold}/model.pt",
        history="results/embedding/fold{fold}/history.csv",
    log:
        "logs/train_embedding/fold{fold}.log",
    benchmark:
        "benchmarks/train_embedding/fold{fold}.tsv"
    # Resumes from its last.pt after a preemption, as train does.
    retries: 2
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        **gpu_resources(lambda wildcards: model_work(EMBEDDING, training=True)),
        mem_mb=TRAINING_MEM_MB,
        runtime=training_runtime(lambda wildcards: EMBEDDING["epochs"]),
    params:
        embedding={k: v for k, v in EMBEDDING.items() if k not in SEARCH_KEYS},
    script:
        "../scripts/train_embedding.py"


rule embed:
    input:
        checkpoint="results/embedding/fold{fold}/model.pt",
        train_npy="results/cache/train.npy",
        train_index="results/cache/train.csv",
        test_npy="results/cache/test.npy",
        test_index="results/cache/test.csv",
    output:
        embeddings="results/embedding/fold{fold}/embeddings.npz",
    log:
        "logs/embed/fold{fold}.log",
    benchmark:
        "benchmarks/embed/fold{fold}.tsv"
    retries: 1
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        **gpu_resources(
            lambda wildcards: model_work(EMBEDDING, training=False, batch_size=config["predict"]["batch_size"])
        ),
        mem_mb=INFERENCE_MEM_MB,
        runtime=CACHE_READ_RUNTIME,
    params:
        flips=EMBEDDING["flips"],
        batch_size=config["predict"]["batch_size"],
    script:
        "../scripts/embed.py"


rule embedding_neighbours:
    input:
        embeddings=expand("results/embedding/fold{fold}/embeddings.npz", fold=FOLDS),
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
    output:
        neighbours="results/embedding/neighbours.csv",
    log:
        "logs/embedding_neighbours.log",
    benchmark:
        "benchmarks/embedding_neighbours.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=EMBEDDINGS_MEM_MB,
        runtime=EMBEDDINGS_RUNTIME,
    params:
        folds=FOLDS,
    script:
        "../scripts/embedding_neighbours.py"


rule transfer_labels:
    input:
        oof="results/ensembles/{ensemble}/oof.csv",
        test="results/ensembles/{ensemble}/test.csv",
        neighbours="results/embedding/neighbours.csv",
        manifest="results/data/manifest.csv",
        folds="results/splits/folds.csv",
    output:
        oof="results/ensembles/{ensemble}/transfer/oof.csv",
        test="results/ensembles/{ensemble}/transfer/test.csv",
        candidates="results/ensembles/{ensemble}/transfer/candidates.csv",
        record="results/ensembles/{ensemble}/transfer/transfer.json",
    log:
        "logs/transfer_labels/{ensemble}.log",
    benchmark:
        "benchmarks/transfer_labels/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        ensemble=lambda wildcards: {k: ENSEMBLES[wildcards.ensemble][k] for k in TRANSFER_KEYS},
    script:
        "../scripts/transfer_labels.py"


rule embedding_duplicates:
    input:
        **external_inputs("duplicates"),
        embeddings=expand("results/embedding/fold{fold}/embeddings.npz", fold=FOLDS),
        manifest="results/data/manifest.csv",
    output:
        duplicates="results/embedding/duplicates.csv",
    log:
        "logs/embedding_duplicates.log",
    benchmark:
        "benchmarks/embedding_duplicates.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=EMBEDDINGS_MEM_MB,
        runtime=EMBEDDINGS_RUNTIME,
    params:
        min_similarity=EMBEDDING["duplicate_similarity"],
    script:
        "../scripts/embedding_duplicates.py"

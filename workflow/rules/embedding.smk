# Metric-learning label transfer (the 1st place's): an ArcFace embedding per fold, each
# image's nearest training image, and for ensembles with transfer: true the neighbours'
# labels transferred above a cosine threshold fitted out-of-fold. Also a learned
# duplicate detector beside the perceptual hashes.

EMBEDDING = config["embedding"]
# Read by embed and embedding_duplicates only, so that changing them retrains nothing.
SEARCH_KEYS = ("flips", "duplicate_similarity")
# What transfer_labels reads of an ensemble: its transfer keys and the threshold fit it scores under.
TRANSFER_KEYS = ("transfer_mode", "transfer_weight", "threshold", "top1", "shrink", "shrink_toward")


rule train_embedding:
    input:
        npy="results/cache/train.npy",
        index="results/cache/train.csv",
        stats="results/cache/stats.json",
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
    output:
        checkpoint="results/embedding/fold{fold}/model.pt",
        history="results/embedding/fold{fold}/history.csv",
    params:
        embedding={k: v for k, v in EMBEDDING.items() if k not in SEARCH_KEYS},
    log:
        "logs/train_embedding/fold{fold}.log",
    benchmark:
        "benchmarks/train_embedding/fold{fold}.tsv"
    threads: 4
    # Resumes from its last.pt after a preemption, as train does.
    retries: 2
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
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
    params:
        flips=EMBEDDING["flips"],
        batch_size=config["predict"]["batch_size"],
    log:
        "logs/embed/fold{fold}.log",
    benchmark:
        "benchmarks/embed/fold{fold}.tsv"
    threads: 4
    retries: 1
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/embed.py"


rule embedding_neighbours:
    input:
        embeddings=expand("results/embedding/fold{fold}/embeddings.npz", fold=FOLDS),
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
    output:
        neighbours="results/embedding/neighbours.csv",
    params:
        folds=FOLDS,
    log:
        "logs/embedding_neighbours.log",
    benchmark:
        "benchmarks/embedding_neighbours.tsv"
    conda:
        "../../envs/data.yaml"
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
    params:
        ensemble=lambda wildcards: {k: ENSEMBLES[wildcards.ensemble][k] for k in TRANSFER_KEYS},
    log:
        "logs/transfer_labels/{ensemble}.log",
    benchmark:
        "benchmarks/transfer_labels/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/transfer_labels.py"


rule embedding_duplicates:
    input:
        embeddings=expand("results/embedding/fold{fold}/embeddings.npz", fold=FOLDS),
        manifest="results/data/manifest.csv",
        **external_inputs("duplicates"),
    output:
        duplicates="results/embedding/duplicates.csv",
    params:
        min_similarity=EMBEDDING["duplicate_similarity"],
    log:
        "logs/embedding_duplicates.log",
    benchmark:
        "benchmarks/embedding_duplicates.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/embedding_duplicates.py"

# The cell-level model (cells.model): every cell cut out at its field's own resolution, one model
# per fold trained with its image's labels by the image models' loop (its validation pass scores the
# fold's out-of-fold cells), then the test cells scored through the same TTA. cell_labels blends it into the gated scores (docs/cells.md).


rule cell_crops:
    input:
        unpack(get_crop_masks),
        **user_masks(),
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
        bit_depth="results/cache/bit_depth.json",
    output:
        npy="results/cells/crops/{split}.npy",
        index="results/cells/crops/{split}.csv",
    log:
        "logs/cell_crops/{split}.log",
    benchmark:
        "benchmarks/cell_crops/{split}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        # What cutting reads: the crop's size and margin, and how training images are segmented.
        crops=(
            {k: CELLS[k] for k in ("nucleus_channel", "body_channels")}
            | {k: CELL_MODEL[k] for k in ("crop", "margin", "window")}
            if CELL_MODEL
            else None
        ),
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/cell_crops.py"


rule train_cell_model:
    input:
        npy="results/cells/crops/train.npy",
        index="results/cells/crops/train.csv",
        stats="results/cache/stats.json",
        folds="results/splits/folds.csv",
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
        sampling_weights=get_cell_sampling_weights,
    output:
        checkpoint="results/cells/model/fold{fold}/model.pt",
        history="results/cells/model/fold{fold}/history.csv",
        oof="results/cells/model/fold{fold}/oof.csv",
    log:
        "logs/train_cell_model/fold{fold}.log",
    benchmark:
        "benchmarks/train_cell_model/fold{fold}.tsv"
    retries: 2
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        **gpu_resources(lambda wildcards: model_work(CELL_MODEL["train"], training=True, size=CELL_MODEL["crop"])),
        mem_mb=TRAINING_MEM_MB,
        runtime=training_runtime(lambda wildcards: CELL_MODEL["train"]["epochs"]),
    params:
        model=({k: v for k, v in CELL_MODEL["train"].items() if k not in RUNTIME_KEYS} if CELL_MODEL else None),
        # The model's name in its checkpoint, and where in the config its runtime-only keys are read.
        name="cells",
        entry=["cells", "model", "train"],
        # The crops' own size (cells.model.crop): no random crop of them.
        image_size=None,
    script:
        "../scripts/train.py"


rule predict_cell_model:
    input:
        checkpoint="results/cells/model/fold{fold}/model.pt",
        test_npy="results/cells/crops/test.npy",
        test_index="results/cells/crops/test.csv",
    output:
        cells="results/cells/model/fold{fold}/cells.npz",
    log:
        "logs/predict_cell_model/fold{fold}.log",
    benchmark:
        "benchmarks/predict_cell_model/fold{fold}.tsv"
    retries: 1
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        **gpu_resources(
            lambda wildcards: model_work(
                CELL_MODEL["train"],
                training=False,
                batch_size=config["predict"]["batch_size"],
                size=CELL_MODEL["crop"],
            )
        ),
        mem_mb=INFERENCE_MEM_MB,
        runtime=CACHE_READ_RUNTIME,
    params:
        tta=CELL_MODEL["tta"] if CELL_MODEL else None,
        batch_size=config["predict"]["batch_size"],
    script:
        "../scripts/predict_cell_model.py"

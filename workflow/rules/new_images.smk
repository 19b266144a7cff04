# A trained ensemble on a folder of new images (not part of `all`), through the submission's
# own blend and threshold code. What each threshold method means there: config/README.md.


rule predict_new:
    """Probabilities (a column per class name), classes and their names for every image of config["new_images"].

    Its files are named {Id}_{channel}.{ext} by the checkpoints' channel names (a folder carrying
    other names is refused, naming both lists), or named by a sample sheet (new_images a .tsv/.csv
    file), decoded by the training images' bit_depth.json and data.fit.

    Blended by the ensemble's combination.json and thresholded as its submission is: fitted
    thresholds as fitted on the out-of-fold predictions; match_distribution re-matched to the
    training rates on the folder's own images when it has at least 1 / (the rarest class's
    training frequency) of them (fewer could not predict that class at all), else its
    out-of-fold thresholds (the table's `thresholds` column says which). A label-transferring ensemble is refused by name.
    Images stream through in batches; a skipped one gets ok=False and its reason.
    """
    input:
        checkpoints=get_new_image_checkpoints,
        thresholds="results/thresholds/{ensemble}.json",
        combination="results/ensembles/{ensemble}/combination.json",
        bit_depth="results/cache/bit_depth.json",
        folder=config["new_images"],
    output:
        predictions="results/new_images/{ensemble}.csv",
    log:
        "logs/predict_new/{ensemble}.log",
    benchmark:
        "benchmarks/predict_new/{ensemble}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        # Every checkpoint of an ensemble, one after the other: a whole GPU.
        **gpu_resources(whole=1),
        # Sized by the checkpoints: a folder's size is not its images' (raise runtime in the
        # profile's set-resources for a large folder)
        mem_mb=INFERENCE_MEM_MB,
        runtime=sized(60, per_input_mb=2 / 1024),
    params:
        ensemble=lambda wildcards: ENSEMBLES[wildcards.ensemble],
        folds=FOLDS,
        batch_size=config["predict"]["batch_size"],
        crops=config["predict"]["crops"],
        fit=config["data"]["fit"],
        clipping=config["data"]["clipping"],
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/predict_new.py"


rule new_image_panels:
    """On request: per image of config["new_images"] that predict_new classified, where the ensemble
    sees each predicted class and in which cells (cells segmented from the image's own stains,
    each shown alone to every checkpoint), as one JPEG, with every cell's scores in cells.csv."""
    input:
        predictions="results/new_images/{ensemble}.csv",
        checkpoints=get_new_image_checkpoints,
        thresholds="results/thresholds/{ensemble}.json",
        bit_depth="results/cache/bit_depth.json",
        folder=config["new_images"],
    output:
        panels=directory("results/new_images/{ensemble}_panels"),
    log:
        "logs/new_image_panels/{ensemble}.log",
    benchmark:
        "benchmarks/new_image_panels/{ensemble}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: gpu_job_threads(4)
    resources:
        # Every checkpoint of an ensemble, one after the other: a whole GPU.
        **gpu_resources(whole=1),
        mem_mb=INFERENCE_MEM_MB,
        runtime=sized(60, per_input_mb=10 / 1024),
    params:
        ensemble=lambda wildcards: ENSEMBLES[wildcards.ensemble],
        folds=FOLDS,
        cells=(
            {k: CELLS[k] for k in ("nucleus_channel", "body_channels", "tta", "method", "blend_weight")}
            if CELLS
            else None
        ),
        fit=config["data"]["fit"],
    script:
        "../scripts/new_image_panels.py"

# External HPAv18 images (external.use): download, hash the source's own images,
# clean (complete channels, no duplicates of train or test, one per duplicate cluster).
# Ingest merges the kept images; the folds keep each duplicate cluster in one fold.

EXTERNAL = config["external"]


rule download_external:
    input:
        list=EXTERNAL["list"],
    output:
        records="results/external/download.csv",
    log:
        "logs/download_external.log",
    benchmark:
        "benchmarks/download_external.tsv"
    retries: 2  # a lost connection or a killed job resumes from the download journal
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        # ~78k HPAv18 images x 4 channels: ~12 h for the real list (~6 MB)
        runtime=sized(30, per_input_mb=120),
    params:
        # Only what changes the images is a param; workers, rate, timeout and
        # retries are read from the config so that tuning them reruns nothing.
        image={k: EXTERNAL[k] for k in ("size", "yellow")} | {"hash": EXTERNAL["dedup"]["hash"]},
        # The image folder and journal are paths but not outputs: a retry resumes from them,
        # and Snakemake deletes the outputs of a failed job. records lists what they hold.
        image_dir=f"{EXTERNAL['dir']}/images",
        journal=f"{EXTERNAL['dir']}/download_journal.jsonl",
    script:
        "../scripts/download_external.py"


rule hash_images:
    input:
        **source_files(),
        bit_depth="results/cache/bit_depth.json",
    output:
        hashes="results/external/source_hashes.csv",
        # The source's channels the bit-depth rule clips, found as cache_images finds them.
        clipped="results/data/clipped/hashed.csv",
    log:
        "logs/hash_images.log",
    benchmark:
        "benchmarks/hash_images.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        **label_columns(),
        hash=EXTERNAL["dedup"]["hash"],
        # The folders ingest reads, decoded as cache_images decodes them.
        full_size=full_size(),
        clipping=config["data"]["clipping"],
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/hash_images.py"


rule clean_external:
    input:
        records="results/external/download.csv",
        list=EXTERNAL["list"],
        source="results/external/source_hashes.csv",
    output:
        kept="results/external/kept.csv",
        table="results/external/cleaning.csv",
        duplicates="results/external/duplicates.csv",
        leaks="results/external/leaks.csv",
        report="results/external/report.json",
    log:
        "logs/clean_external.log",
    benchmark:
        "benchmarks/clean_external.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        # Perceptual-hash deduplication of the downloads against each other and the source
        mem_mb=sized(2000, per_input_mb=200),
        runtime=sized(10, per_input_mb=5),
    params:
        external={k: EXTERNAL[k] for k in ("dedup", "blank_std")},
        # More source images without a hash than this stops cleaning (they would go uncompared).
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
        # Not opened here: written into kept.csv, which tells ingest where the kept images are.
        image_dir=f"{EXTERNAL['dir']}/images",
    script:
        "../scripts/clean_external.py"

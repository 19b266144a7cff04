# Ingest and validate the source, then decode its images once into the cache.


# The classes and channels every later stage counts: rewritten (and what depends on it
# rerun) when labels: or channels: change, since they are its params.
rule vocabulary:
    output:
        VOCABULARY,
    log:
        "logs/vocabulary.log",
    benchmark:
        "benchmarks/vocabulary.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        vocabulary=VOCAB.to_json(),
    script:
        "../scripts/vocabulary.py"


# Every listed training image's labels, canonical (before any image is checked), for the label
# analysis: labels only, so that it runs before the images are in place.
rule labels:
    input:
        **label_files(),
        vocabulary=VOCABULARY,
    output:
        labels=LABELS,
    log:
        "logs/labels.log",
    benchmark:
        "benchmarks/labels.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        **label_columns(),
        source=config["source"],
    script:
        "../scripts/train_labels.py"


# The true test labels, canonical, from whichever file holds them (common.smk: test_label_files),
# of the test images ingest kept (the manifest's): a rejected test row is in no score.
rule test_labels:
    input:
        **test_label_files(),
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
    output:
        labels=TEST_LABELS,
    log:
        "logs/test_labels.log",
    benchmark:
        "benchmarks/test_labels.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        **label_columns(),
    script:
        "../scripts/test_labels_table.py"


rule ingest:
    input:
        **source_files(),
        **external_inputs("kept"),
        vocabulary=VOCABULARY,
    output:
        manifest="results/data/manifest.csv",
        rejected="results/data/rejected.csv",
    log:
        log="logs/ingest.log",
        # Every rejected image, also when too many of them stop the run (Snakemake then
        # removes the outputs, rejected.csv included; logs stay).
        rejected="logs/ingest_rejected.csv",
    benchmark:
        "benchmarks/ingest.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        **label_columns(),
        source=config["source"],
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
        full_size=full_size(),
    script:
        "../scripts/ingest.py"


# How each channel's 16-bit images become 8-bit (data.bit_depth; auto measures the range a
# dataset uses), measured on the training images themselves, not the manifest: hash_images,
# which ingest waits for when external.use is on, decodes by it too.
rule bit_depth:
    input:
        **bit_depth_images(),
        vocabulary=VOCABULARY,
    output:
        bit_depth="results/cache/bit_depth.json",
    log:
        "logs/bit_depth.log",
    benchmark:
        "benchmarks/bit_depth.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        bit_depth=config["data"]["bit_depth"],
    script:
        "../scripts/bit_depth.py"


rule cache_images:
    input:
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
        bit_depth="results/cache/bit_depth.json",
    output:
        npy="results/cache/{split}.npy",
        index="results/cache/{split}.csv",
        # Channels the bit-depth rule clips (data.clipping): Id, channel, shares at 255 and at 0.
        clipped="results/data/clipped/{split}.csv",
    log:
        "logs/cache_images/{split}.log",
    benchmark:
        "benchmarks/cache_images/{split}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 8
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        size=config["data"]["cache_size"] or config["data"]["image_size"],
        fit=config["data"]["fit"],
        clipping=config["data"]["clipping"],
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/cache_images.py"


rule source_duplicates:
    """Near-duplicate pairs within the source's own images (any source), per channel within
    external.dedup.max_distance on every channel. With external.use on, the hashes are hash_images's
    (results/external/source_hashes.csv, external.dedup.hash over external.dedup.channels) of the
    images the cache kept, so this rule costs only the search; off, each cached image is hashed here
    (a vectorised pHash, hpa.external.within). Test images duplicating a training image go to
    leaks.csv; training images in a cluster of two or more to duplicates.csv, which make_folds keeps
    in one fold."""
    input:
        train_npy="results/cache/train.npy",
        train_index="results/cache/train.csv",
        test_npy="results/cache/test.npy",
        test_index="results/cache/test.csv",
        hashes=get_source_hashes,
    output:
        leaks="results/data/leaks.csv",
        duplicates="results/data/duplicates.csv",
    log:
        "logs/source_duplicates.log",
    benchmark:
        "benchmarks/source_duplicates.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        max_distance=config["external"]["dedup"]["max_distance"],
        hash=config["external"]["dedup"]["hash"],
        channels=config["external"]["dedup"]["channels"],
    script:
        "../scripts/source_duplicates.py"


rule channel_stats:
    input:
        npy="results/cache/train.npy",
        index="results/cache/train.csv",
        vocabulary=VOCABULARY,
    output:
        stats="results/cache/stats.json",
    log:
        "logs/channel_stats.log",
    benchmark:
        "benchmarks/channel_stats.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        runtime=CACHE_READ_RUNTIME,
    script:
        "../scripts/channel_stats.py"

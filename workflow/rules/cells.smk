# Where, per cell: a mask per test image, each ensemble's class maps (predict writes each
# fold's), every cell's score per class and the 2021 competition's submission, a gallery
# per class, and, where a cell truth exists (the demo's), how well each of them does.


rule segment_cells:
    input:
        **user_masks(),
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
        bit_depth="results/cache/bit_depth.json",
    output:
        masks=directory("results/cells/masks"),
        cells="results/cells/cells.csv",
        images="results/cells/images.csv",
    log:
        log="logs/segment_cells.log",
        # Every image and its problem, also when too many problems stop the run.
        images="logs/segment_cells_images.csv",
    benchmark:
        "benchmarks/segment_cells.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    resources:
        mem_mb=PER_IMAGE_MEM_MB,
        runtime=PER_IMAGE_RUNTIME,
    params:
        # Only what segmenting reads, so that a new per-cell method does not segment again.
        cells={k: CELLS[k] for k in ("nucleus_channel", "body_channels", "masks")} if CELLS else None,
        max_rejected_fraction=config["data"]["max_rejected_fraction"],
    script:
        "../scripts/segment_cells.py"


rule cell_labels:
    input:
        unpack(get_member_cells),
        unpack(get_cell_model),
        test=ensemble_table("test"),
        thresholds="results/thresholds/{ensemble}.json",
        masks="results/cells/masks",
        images="results/cells/images.csv",
        cache_index="results/cache/test.csv",
        vocabulary=VOCABULARY,
    output:
        **cell_model_outputs(),
        maps="results/cells/{ensemble}/class_maps.npz",
        alone="results/cells/{ensemble}/cells_alone.npz",
        scores="results/cells/{ensemble}/cell_scores.csv",
        submission="results/cells/{ensemble}/submission_2021.csv",
    log:
        "logs/cell_labels/{ensemble}.log",
    benchmark:
        "benchmarks/cell_labels/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        runtime=PER_IMAGE_RUNTIME,
    params:
        cells={k: CELLS[k] for k in ("method", "blend_weight", "min_score", "partial_cells")} if CELLS else None,
    script:
        "../scripts/cell_labels.py"


rule cell_gallery:
    input:
        test=ensemble_table("test"),
        thresholds="results/thresholds/{ensemble}.json",
        maps="results/cells/{ensemble}/class_maps.npz",
        alone="results/cells/{ensemble}/cells_alone.npz",
        scores="results/cells/{ensemble}/cell_scores.csv",
        masks="results/cells/masks",
        manifest="results/data/manifest.csv",
        bit_depth="results/cache/bit_depth.json",
        cache_index="results/cache/test.csv",
        vocabulary=VOCABULARY,
        test_labels=get_test_labels(),
    output:
        gallery=report(
            directory("results/cells/{ensemble}/gallery"),
            patterns=["{name}.jpg"],
            caption="../report/gallery.rst",
            category="Cells",
            subcategory="{ensemble}",
        ),
    log:
        "logs/cell_gallery/{ensemble}.log",
    benchmark:
        "benchmarks/cell_gallery/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        per_kind=CELLS["gallery"] if CELLS else 0,
    script:
        "../scripts/cell_gallery.py"


rule evaluate_segmentation:
    input:
        **cell_truth(),
        masks="results/cells/masks",
        images="results/cells/images.csv",
        manifest="results/data/manifest.csv",
        bit_depth="results/cache/bit_depth.json",
        vocabulary=VOCABULARY,
    output:
        evaluation="results/cells/segmentation.json",
    log:
        "logs/evaluate_segmentation.log",
    benchmark:
        "benchmarks/evaluate_segmentation.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        # The truth's folder, from its table (a prefix of an input, not a second spelling of it).
        truth=lambda wildcards, input: str(Path(input.truth_table).parent),
        nucleus=CELLS["nucleus_channel"] if CELLS else None,
    script:
        "../scripts/evaluate_segmentation.py"


rule evaluate_cells:
    input:
        unpack(get_cell_model),
        **cell_truth(),
        segmentation="results/cells/segmentation.json",
        maps="results/cells/{ensemble}/class_maps.npz",
        alone="results/cells/{ensemble}/cells_alone.npz",
        test=ensemble_table("test"),
        thresholds="results/thresholds/{ensemble}.json",
        masks="results/cells/masks",
        images="results/cells/images.csv",
        cache="results/cache/test.npy",
        cache_index="results/cache/test.csv",
        vocabulary=VOCABULARY,
    output:
        evaluation="results/cells/{ensemble}/cell_evaluation.json",
        table=report(
            "results/cells/{ensemble}/cell_evaluation.csv",
            caption="../report/cell_evaluation.rst",
            category="Cells",
            subcategory="{ensemble}",
        ),
        figure=report(
            "results/cells/{ensemble}/cell_evaluation.png",
            caption="../report/cell_evaluation.rst",
            category="Cells",
            subcategory="{ensemble}",
        ),
    log:
        "logs/evaluate_cells/{ensemble}.log",
    benchmark:
        "benchmarks/evaluate_cells/{ensemble}.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        # The truth's folder, from its table (a prefix of an input, not a second spelling of it).
        truth=lambda wildcards, input: str(Path(input.truth_table).parent),
        blend_weight=CELLS["blend_weight"] if CELLS else None,
        partial_cells=CELLS["partial_cells"] if CELLS else None,
    script:
        "../scripts/evaluate_cells.py"

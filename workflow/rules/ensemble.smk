# Blend folds and models, fit thresholds on OOF probabilities, write the submission.


rule blend:
    input:
        unpack(get_member_predictions),
        manifest="results/data/manifest.csv",
        groups=get_class_groups,
        vocabulary=VOCABULARY,
    output:
        oof="results/ensembles/{ensemble}/oof.csv",
        test="results/ensembles/{ensemble}/test.csv",
        how="results/ensembles/{ensemble}/combination.json",
    log:
        "logs/blend/{ensemble}.log",
    benchmark:
        "benchmarks/blend/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        # Only what blending reads, so that a new threshold method does not re-blend.
        ensemble=lambda wildcards: {
            k: ENSEMBLES[wildcards.ensemble][k] for k in ("models", "combine", "weights", "groups")
        },
    script:
        "../scripts/blend.py"


rule fit_thresholds:
    input:
        oof=ensemble_table("oof"),
        manifest="results/data/manifest.csv",
        folds="results/splits/folds.csv",
        vocabulary=VOCABULARY,
    output:
        thresholds="results/thresholds/{ensemble}.json",
        per_class=report(
            "results/metrics/{ensemble}/per_class.csv",
            caption="../report/per_class.rst",
            category="Thresholds",
            subcategory="{ensemble}",
        ),
        methods=report(
            "results/metrics/{ensemble}/threshold_methods.csv",
            caption="../report/threshold_methods.rst",
            category="Thresholds",
            subcategory="{ensemble}",
        ),
        predictions="results/ensembles/{ensemble}/oof_predictions.csv",
    log:
        "logs/fit_thresholds/{ensemble}.log",
    benchmark:
        "benchmarks/fit_thresholds/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        ensemble=lambda wildcards: ENSEMBLES[wildcards.ensemble],
    script:
        "../scripts/fit_thresholds.py"


rule make_submission:
    input:
        test=ensemble_table("test"),
        thresholds="results/thresholds/{ensemble}.json",
        manifest="results/data/manifest.csv",
        rejected="results/data/rejected.csv",
        test_labels=get_test_labels(),
        vocabulary=VOCABULARY,
    output:
        submission="results/submission/{ensemble}.csv",
        predictions="results/ensembles/{ensemble}/test_predictions.csv",
    log:
        "logs/make_submission/{ensemble}.log",
    benchmark:
        "benchmarks/make_submission/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/make_submission.py"


rule evaluate_test:
    input:
        submission="results/submission/{ensemble}.csv",
        thresholds="results/thresholds/{ensemble}.json",
        methods="results/metrics/{ensemble}/threshold_methods.csv",
        oof=ensemble_table("oof"),
        test=ensemble_table("test"),
        manifest="results/data/manifest.csv",
        folds="results/splits/folds.csv",
        test_labels=TEST_LABELS,
        vocabulary=VOCABULARY,
    output:
        evaluation="results/evaluation/{ensemble}.json",
        methods=report(
            "results/evaluation/{ensemble}_methods.csv",
            caption="../report/test_methods.rst",
            category="Evaluation",
        ),
    log:
        "logs/evaluate_test/{ensemble}.log",
    benchmark:
        "benchmarks/evaluate_test/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/evaluate_test.py"


rule plot_thresholds:
    input:
        oof=ensemble_table("oof"),
        manifest="results/data/manifest.csv",
        thresholds="results/thresholds/{ensemble}.json",
        per_class="results/metrics/{ensemble}/per_class.csv",
        vocabulary=VOCABULARY,
    output:
        curves=report(
            "results/metrics/{ensemble}/threshold_curves.png",
            caption="../report/threshold_curves.rst",
            category="Thresholds",
            subcategory="{ensemble}",
        ),
        f1_bars=report(
            "results/metrics/{ensemble}/per_class_f1.png",
            caption="../report/per_class_f1.rst",
            category="Thresholds",
            subcategory="{ensemble}",
        ),
    log:
        "logs/plot_thresholds/{ensemble}.log",
    benchmark:
        "benchmarks/plot_thresholds/{ensemble}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_thresholds.py"

# Blend folds and models, fit thresholds on OOF probabilities, write the submission.


rule blend:
    input:
        oof=flat(ensemble_predictions("oof")),
        test=flat(ensemble_predictions("test")),
    output:
        oof="results/ensembles/{ensemble}/oof.csv",
        test="results/ensembles/{ensemble}/test.csv",
    params:
        oof=ensemble_predictions("oof"),
        test=ensemble_predictions("test"),
    log:
        "logs/blend/{ensemble}.log",
    benchmark:
        "benchmarks/blend/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/blend.py"


rule fit_thresholds:
    input:
        oof="results/ensembles/{ensemble}/oof.csv",
        manifest="results/data/manifest.csv",
    output:
        thresholds="results/thresholds/{ensemble}.json",
        per_class="results/metrics/{ensemble}/per_class.csv",
    params:
        method=lambda wildcards: ENSEMBLES[wildcards.ensemble]["threshold"],
    log:
        "logs/fit_thresholds/{ensemble}.log",
    benchmark:
        "benchmarks/fit_thresholds/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/fit_thresholds.py"


rule make_submission:
    input:
        test="results/ensembles/{ensemble}/test.csv",
        thresholds="results/thresholds/{ensemble}.json",
        manifest="results/data/manifest.csv",
        rejected="results/data/rejected.csv",
    output:
        submission="results/submission/{ensemble}.csv",
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
        test_labels=f"{config['demo']['dir']}/test_labels.csv",
    output:
        evaluation="results/evaluation/{ensemble}.json",
    log:
        "logs/evaluate_test/{ensemble}.log",
    benchmark:
        "benchmarks/evaluate_test/{ensemble}.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/evaluate_test.py"

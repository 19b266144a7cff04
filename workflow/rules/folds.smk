# Multilabel-stratified cross-validation folds.


rule make_folds:
    input:
        manifest="results/data/manifest.csv",
        **external_inputs("duplicates"),
    output:
        folds="results/splits/folds.csv",
    params:
        n_folds=config["folds"]["n"],
        seed=config["folds"]["seed"],
    log:
        "logs/make_folds.log",
    benchmark:
        "benchmarks/make_folds.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/make_folds.py"

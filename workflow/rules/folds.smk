# Multilabel-stratified cross-validation folds.


rule make_folds:
    input:
        **external_inputs("duplicates"),
        source_duplicates="results/data/duplicates.csv",
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
    output:
        folds="results/splits/folds.csv",
    log:
        "logs/make_folds.log",
    benchmark:
        "benchmarks/make_folds.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        n_folds=config["folds"]["n"],
        seed=config["folds"]["seed"],
    script:
        "../scripts/make_folds.py"

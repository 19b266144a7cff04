# Every ensemble side by side: the table that says which of the write-ups' systems wins here.


rule compare_ensembles:
    input:
        unpack(get_ensemble_benchmarks),
        thresholds=expand("results/thresholds/{ensemble}.json", ensemble=ENSEMBLES),
        evaluations=expand("results/evaluation/{ensemble}.json", ensemble=ENSEMBLES) if get_test_labels() else [],
        # The submissions and the true test labels, where known: paired differences between ensembles.
        submissions=expand("results/submission/{ensemble}.csv", ensemble=ENSEMBLES) if get_test_labels() else [],
        test_labels=get_test_labels(),
        vocabulary=VOCABULARY,
    output:
        table=report(
            "results/evaluation/comparison.csv",
            caption="../report/comparison.rst",
            category="Evaluation",
        ),
    log:
        "logs/compare_ensembles.log",
    benchmark:
        "benchmarks/compare_ensembles.tsv"
    conda:
        "../../envs/data.yaml"
    params:
        models={name: ens["models"] for name, ens in ENSEMBLES.items()},
    script:
        "../scripts/compare_ensembles.py"

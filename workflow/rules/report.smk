# What a person reads first: the report's front page (every ensemble's scores, the class
# table) and, per ensemble, which classes are predicted in place of each true class.


rule class_table:
    input:
        manifest="results/data/manifest.csv",
        vocabulary=VOCABULARY,
    output:
        table=report(
            "results/data/classes.csv",
            caption="../report/classes.rst",
            category="Labels",
        ),
        page="results/report/classes.rst",
    log:
        "logs/class_table.log",
    benchmark:
        "benchmarks/class_table.tsv"
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/class_table.py"


rule front_page:
    input:
        comparison="results/evaluation/comparison.csv",
    output:
        figure=report(
            "results/report/scores.png",
            caption="../report/scores.rst",
            category="Evaluation",
        ),
        page="results/report/scores.rst",
    log:
        "logs/front_page.log",
    benchmark:
        "benchmarks/front_page.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/front_page.py"


rule plot_confusion:
    input:
        oof="results/ensembles/{ensemble}/oof_predictions.csv",
        test="results/ensembles/{ensemble}/test_predictions.csv",
        vocabulary=VOCABULARY,
    output:
        figure=report(
            "results/metrics/{ensemble}/confusion.png",
            caption="../report/confusion.rst",
            category="Thresholds",
            subcategory="{ensemble}",
        ),
    log:
        "logs/plot_confusion/{ensemble}.log",
    benchmark:
        "benchmarks/plot_confusion/{ensemble}.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_confusion.py"

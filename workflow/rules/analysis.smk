# Label co-occurrence analysis: co-occurrence matrices, frequent itemsets and association
# rules (for all labels and per source), class groups and sampling weights.
# Labels only: no image, no manifest. One rule per product, so that changing, say,
# analysis.min_support does not rewrite the sampling weights (and retrain the models).

ANALYSIS = config["analysis"]
COUNT_TABLES = ("cooccurrence_counts", "cooccurrence_conditional")
MINE_TABLES = ("itemsets", "rules")


rule count_labels:
    input:
        **label_sources(),
        vocabulary=VOCABULARY,
    output:
        **analysis_tables(COUNT_TABLES),
        class_counts="results/analysis/class_counts.csv",
    log:
        "logs/count_labels.log",
    benchmark:
        "benchmarks/count_labels.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        sources=list(label_sources()),
    script:
        "../scripts/count_labels.py"


rule mine_labels:
    input:
        **label_sources(),
        vocabulary=VOCABULARY,
    output:
        **analysis_tables(MINE_TABLES),
    log:
        "logs/mine_labels.log",
    benchmark:
        "benchmarks/mine_labels.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        sources=list(label_sources()),
        mining={k: ANALYSIS[k] for k in ("algorithm", "min_support", "max_len", "min_confidence")},
    script:
        "../scripts/mine_labels.py"


rule class_groups:
    input:
        counts="results/analysis/cooccurrence_counts.csv",
        vocabulary=VOCABULARY,
    output:
        groups="results/analysis/class_groups.yaml",
    log:
        "logs/class_groups.log",
    benchmark:
        "benchmarks/class_groups.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        n_groups=ANALYSIS["n_groups"],
        method=ANALYSIS["group_method"],
    script:
        "../scripts/class_groups.py"


rule sampling_weights:
    input:
        **label_sources(),
        vocabulary=VOCABULARY,
    output:
        weights="results/analysis/sampling_weights.csv",
    log:
        "logs/sampling_weights.log",
    benchmark:
        "benchmarks/sampling_weights.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        sources=list(label_sources()),
        power=ANALYSIS["weight_power"],
        cap=ANALYSIS["weight_cap"],
    script:
        "../scripts/sampling_weights.py"


rule plot_labels:
    input:
        class_counts="results/analysis/class_counts.csv",
        cooccurrence_counts="results/analysis/cooccurrence_counts.csv",
        class_groups="results/analysis/class_groups.yaml",
        vocabulary=VOCABULARY,
    output:
        heatmap=report(
            "results/analysis/cooccurrence_heatmap.png",
            caption="../report/cooccurrence_heatmap.rst",
            category="Labels",
        ),
        frequency=report(
            "results/analysis/class_frequency.png",
            caption="../report/class_frequency.rst",
            category="Labels",
        ),
    log:
        "logs/plot_labels.log",
    benchmark:
        "benchmarks/plot_labels.tsv"
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/plot_labels.py"

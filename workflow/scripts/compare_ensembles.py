"""Rule compare_ensembles: every ensemble's OOF, honest and (demo) test macro F1 and job time, side by side."""

from hpa.evaluation import comparison_table
from hpa.io import read_json, setup_logging, write_csv

setup_logging(snakemake.log[0])
evaluations = snakemake.input.evaluations or [None] * len(snakemake.params.jobs)
ensembles = {
    name: {**jobs, "thresholds": read_json(record), "evaluation": read_json(evaluation) if evaluation else None}
    for (name, jobs), record, evaluation in zip(snakemake.params.jobs.items(), snakemake.input.thresholds, evaluations)
}
write_csv(comparison_table(ensembles), snakemake.output.table)

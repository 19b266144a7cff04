# The HPA protein-localization workflow: from Kaggle-layout images (or the
# synthetic demo) to a thresholded ensemble and a Kaggle submission.
# Stages live in workflow/rules/, their logic in workflow/scripts/hpa/.

from snakemake.utils import min_version

min_version("9.0")


# The demo's config is the base unless --configfile names another, which then replaces it
# (not merged into it: `--configfile config/hpa.yaml` must not also train the demo's models).
# Either way --config key=value overrides single keys on top (config/README.md).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/folds.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/cell_model.smk"
include: "workflow/rules/embedding.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/new_images.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/summary.smk"


# Seconds-long rules: on a cluster they run in the Snakemake process itself, since an sbatch
# job would spend longer queued and polled than working. Each reads tables (or per-view
# probabilities), not images.
localrules:
    all,
    count_labels,
    mine_labels,
    class_groups,
    sampling_weights,
    plot_labels,
    make_folds,
    plot_training,
    combine_views,
    blend,
    fit_thresholds,
    make_submission,
    evaluate_test,
    plot_thresholds,
    transfer_labels,
    compare_ensembles,
    class_table,
    vocabulary,
    front_page,
    plot_confusion,


rule all:
    default_target: True
    input:
        all_outputs(),

# The embedded demo dataset (source: demo): synthetic HPA fields in Kaggle layout,
# and its stand-in for the HPAv18 image server (the external list points at it).


rule make_demo:
    output:
        train_csv=f"{config['demo']['dir']}/train.csv",
        sample_submission=f"{config['demo']['dir']}/sample_submission.csv",
        test_labels=f"{config['demo']['dir']}/test_labels.csv",
        train_images=directory(f"{config['demo']['dir']}/train"),
        test_images=directory(f"{config['demo']['dir']}/test"),
        # What the generator drew in each test field, kept aside like test_labels.csv: the
        # cells, each cell's labels, and where each label's pattern is (hpa.demo.truth).
        test_cells=f"{config['demo']['dir']}/test_cells.csv",
        test_cell_masks=directory(f"{config['demo']['dir']}/test_cells"),
        test_regions=directory(f"{config['demo']['dir']}/test_regions"),
    log:
        "logs/make_demo.log",
    benchmark:
        "benchmarks/make_demo.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 4
    params:
        # The mirror has its own rule: changing it must not regenerate the demo.
        demo={k: v for k, v in config["demo"].items() if k != "mirror"},
    script:
        "../scripts/make_demo.py"


rule make_demo_mirror:
    input:
        train_csv=f"{config['demo']['dir']}/train.csv",
        test_labels=f"{config['demo']['dir']}/test_labels.csv",
        train_images=f"{config['demo']['dir']}/train",
        test_images=f"{config['demo']['dir']}/test",
    output:
        list=f"{config['demo']['dir']}/mirror/list.csv",
        truth=f"{config['demo']['dir']}/mirror/truth.csv",
        images=directory(f"{config['demo']['dir']}/mirror/images"),
    log:
        "logs/make_demo_mirror.log",
    benchmark:
        "benchmarks/make_demo_mirror.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    params:
        mirror=config["demo"]["mirror"],
        seed=config["demo"]["seed"],
    script:
        "../scripts/make_demo_mirror.py"

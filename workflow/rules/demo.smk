# The embedded demo dataset (source: demo): synthetic HPA fields in Kaggle layout.


rule make_demo:
    output:
        train_csv=f"{config['demo']['dir']}/train.csv",
        sample_submission=f"{config['demo']['dir']}/sample_submission.csv",
        test_labels=f"{config['demo']['dir']}/test_labels.csv",
    params:
        demo=config["demo"],
    log:
        "logs/make_demo.log",
    benchmark:
        "benchmarks/make_demo.tsv"
    threads: 4
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/make_demo.py"

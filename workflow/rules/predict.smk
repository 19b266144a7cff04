# Test-time-augmented probabilities of each trained fold, on its out-of-fold
# images (for threshold fitting) and on the test images.


rule predict:
    input:
        checkpoint="results/models/{model}/fold{fold}/model.pt",
        train_npy="results/cache/train.npy",
        train_index="results/cache/train.csv",
        test_npy="results/cache/test.npy",
        test_index="results/cache/test.csv",
        folds="results/splits/folds.csv",
    output:
        oof="results/predictions/{model}/fold{fold}/{tta}_{aggregate}/oof.csv",
        test="results/predictions/{model}/fold{fold}/{tta}_{aggregate}/test.csv",
    params:
        tta="{tta}",
        aggregate="{aggregate}",
        batch_size=config["predict"]["batch_size"],
    log:
        "logs/predict/{model}/fold{fold}/{tta}_{aggregate}.log",
    benchmark:
        "benchmarks/predict/{model}/fold{fold}/{tta}_{aggregate}.tsv"
    threads: 4
    resources:
        gpu=1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/predict.py"

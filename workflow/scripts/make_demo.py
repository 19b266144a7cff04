"""Rule make_demo: write the synthetic demo dataset in Kaggle layout."""

from pathlib import Path

from hpa.demo.dataset import make_demo
from hpa.files import setup_logging

setup_logging(snakemake.log[0])
cfg = snakemake.params.demo
make_demo(
    Path(snakemake.output.train_csv).parent,
    n_train=cfg["n_train"],
    n_test=cfg["n_test"],
    size=cfg["size"],
    seed=cfg["seed"],
    min_per_class=cfg["min_per_class"],
    workers=snakemake.threads,
)

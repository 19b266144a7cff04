"""Rule cell_labels: an ensemble's class maps, each test cell's score per class and labels, and the
2021 competition's submission (ID, ImageWidth, ImageHeight, PredictionString)."""

import pandas as pd

from hpa.cells.cell_model import fitted
from hpa.cells.labels_job import ensemble_maps, label_cells, write_cells, write_maps
from hpa.cells.scores import alone_lookup, ensemble_cells
from hpa.classes import Vocabulary
from hpa.files import read_json, setup_logging, write_csv
from hpa.postprocess.submission import applied_thresholds
from hpa.tables import prob_matrix

setup_logging(snakemake.log[0])
vocab = Vocabulary.read(snakemake.input.vocabulary)
settings = snakemake.params.cells
probs = pd.read_csv(snakemake.input.test, dtype={"Id": str})
thresholds, _ = applied_thresholds(read_json(snakemake.input.thresholds), prob_matrix(probs, "test probabilities"))
ids, maps = ensemble_maps(snakemake.input.maps)
write_maps(ids, maps, vocab.classes, snakemake.output.maps)
alone = ensemble_cells(snakemake.input.cells)
write_cells(*alone, snakemake.output.alone)
index = pd.read_csv(snakemake.input.cache_index, dtype={"Id": str}, keep_default_na=False)
cell_model = None
if "cell_model" in snakemake.input.keys():  # cells.model: its blend fitted out of fold (hpa.cells.cell_model)
    cell_model, fit = fitted(snakemake.input.cell_model_oof, snakemake.input.cell_model, snakemake.input.oof,
                             snakemake.input.manifest, vocab.n_classes)
    write_csv(fit.assign(name=[vocab.classes[c] for c in fit["class"]]), snakemake.output.cell_model)
scores, submission = label_cells(
    images=pd.read_csv(snakemake.input.images, dtype={"Id": str}, keep_default_na=False),
    masks_dir=snakemake.input.masks,
    probs=probs,
    map_ids=ids,
    maps=maps,
    fits=dict(zip(index["Id"], index["fit"])),
    thresholds=thresholds,
    classes=vocab.classes,
    method=settings["method"],
    weight=settings["blend_weight"],
    min_score=settings["min_score"],
    partial=settings["partial_cells"],
    alone=alone_lookup(*alone),
    cell_model=cell_model,
)
write_csv(scores, snakemake.output.scores)
write_csv(submission, snakemake.output.submission)

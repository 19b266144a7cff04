"""Rule evaluate_cells (where a cell truth exists): an ensemble's per-cell mAP by method against the
no-map baseline, the pointing game of its class maps, and the segmentation's F1, as one table and figure."""

import numpy as np
import pandas as pd

from hpa.cells.cell_model import fitted
from hpa.cells.evaluate_job import evaluate_cells, evaluation_table
from hpa.cells.figures import plot_evaluation
from hpa.cells.scores import alone_lookup
from hpa.classes import Vocabulary
from hpa.data.cache import open_cache
from hpa.files import read_json, setup_logging, write_csv, write_json
from hpa.postprocess.submission import applied_thresholds
from hpa.tables import prob_matrix

setup_logging(snakemake.log[0])
vocab = Vocabulary.read(snakemake.input.vocabulary)
with np.load(snakemake.input.maps) as saved:
    ids, maps = saved["ids"].astype(str), saved["maps"]
with np.load(snakemake.input.alone) as saved:
    ids_alone, cells_alone, probs_alone = saved["ids"].astype(str), saved["cells"], saved["probs"]
cache, index = open_cache(snakemake.input.cache, snakemake.input.cache_index)
probs = pd.read_csv(snakemake.input.test, dtype={"Id": str})
thresholds, _ = applied_thresholds(read_json(snakemake.input.thresholds), prob_matrix(probs, "test probabilities"))
cell_model = None
if "cell_model" in snakemake.input.keys():  # cells.model: the blend cell_labels applies, fitted the same way
    cell_model, _ = fitted(snakemake.input.cell_model_oof, snakemake.input.cell_model, snakemake.input.oof,
                           snakemake.input.manifest, vocab.n_classes)
protein = vocab.channels.index(vocab.rgb.get("green", vocab.channels[0]))
result = evaluate_cells(
    truth_dir=snakemake.params.truth,
    images=pd.read_csv(snakemake.input.images, dtype={"Id": str}, keep_default_na=False),
    masks_dir=snakemake.input.masks,
    probs=probs,
    map_ids=ids,
    maps=maps,
    fits=dict(zip(index["Id"], index["fit"])),
    n_classes=vocab.n_classes,
    weight=snakemake.params.blend_weight,
    thresholds=thresholds,
    proteins={i: cache[r, protein] for i, r, ok in zip(index["Id"], index["row"], index["ok"]) if ok},
    alone=alone_lookup(ids_alone, cells_alone, probs_alone),
    cell_model=cell_model,
    partial=snakemake.params.partial_cells,
)
segmentation = read_json(snakemake.input.segmentation)
write_json(result | {"segmentation": segmentation}, snakemake.output.evaluation)
table = evaluation_table(segmentation, result, vocab.classes)
write_csv(table, snakemake.output.table)
plot_evaluation(result, segmentation, vocab.classes, snakemake.output.figure, title=snakemake.wildcards.ensemble)

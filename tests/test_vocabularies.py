"""Everything after the manifest follows the vocabulary's classes: 6 and 19 of them here, not the HPA 28.

Tables, the co-occurrence stage, the figures (their grids), blending by class groups,
thresholds and the submission, the report's class table, the group presets' refusal and
a classifier's outputs are each run with a vocabulary that is not the 2018 task's.
"""

import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from hpa import figures as hpa_figures
from hpa import thresholds as th
from hpa.classes import HPA, Vocabulary
from hpa.groups import check_partition, resolve_groups
from hpa.labels import cooccurrence as co
from hpa.labels import figures as label_figures
from hpa.postprocess import figures as post_figures
from hpa.postprocess import threshold_figures as curves
from hpa.postprocess.blend import apply_combination, combine
from hpa.postprocess.front_page import class_table, classes_page
from hpa.postprocess.predictions import submission_table
from hpa.postprocess.submission import fit_thresholds, submission, submission_matrices
from hpa.tables import (
    InputError,
    labels_to_matrix,
    matrix_to_labels,
    prob_columns,
    prob_matrix,
    probability_table,
    read_probs,
)
from hpa.training import curves as training_curves

SIX = Vocabulary(classes=("Nucleus", "Cytosol", "Mitochondria", "Golgi", "Membrane", "Vesicles"))
NINETEEN = Vocabulary(classes=tuple(f"class {k}" for k in range(19)), separator="|")
SIZES = pytest.mark.parametrize("vocab", [SIX, NINETEEN], ids=["6 classes", "19 classes"])


def labelled(vocab, n=240, seed=0):
    """``Id,Target`` of ``n`` images, every image at least one class, classes 0 and 1 often together."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, vocab.n_classes)) < 0.2
    y[np.arange(n), rng.integers(0, vocab.n_classes, n)] = True
    y[: n // 3, :2] = True
    return pd.DataFrame({"Id": [f"i{i:03d}" for i in range(n)], "Target": matrix_to_labels(y), "source": "kaggle"}), y


def captured(monkeypatch):
    """The figures the plotting code saves, kept open for the test to look at."""
    saved = []
    for module in (hpa_figures, label_figures, post_figures, curves, training_curves):
        monkeypatch.setattr(module, "save_figure", lambda fig, path, dpi=100: saved.append(fig))
    return saved


@SIZES
def test_tables_take_the_number_of_classes(vocab, tmp_path):
    n = vocab.n_classes
    y = labels_to_matrix(["0 2", "", str(n - 1)], n)
    assert y.shape == (3, n) and y[2, n - 1] == 1 and matrix_to_labels(y) == ["0 2", "", str(n - 1)]
    with pytest.raises(InputError, match=f"class {n} is outside 0..{n - 1}"):
        labels_to_matrix([str(n)], n)
    table = probability_table(["a", "b"], np.full((2, n), 0.25))
    assert list(table.columns) == ["Id", *prob_columns(n)] and prob_matrix(table).shape == (2, n)
    table.to_csv(tmp_path / "p.csv", index=False)
    assert list(read_probs(tmp_path / "p.csv").columns) == prob_columns(n)


def test_a_probability_table_with_gaps_in_its_columns_is_refused(tmp_path):
    pd.DataFrame({"Id": ["a"], "p0": [0.1], "p2": [0.3]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(InputError, match=r"p.csv: probability columns \['p0', 'p2'\] are not p0..p\{n-1\}"):
        read_probs(tmp_path / "p.csv")


@SIZES
def test_the_cooccurrence_stage_counts_groups_and_weighs_the_vocabulary(vocab):
    names, n = vocab.classes, vocab.n_classes
    labels, y = labelled(vocab)
    tables = co.cooccurrence_tables(labels, names)
    counts = co.matrix_values(tables["cooccurrence_counts"])
    assert counts.shape == (n, n) and list(tables["cooccurrence_counts"]["name"]) == list(names)
    assert np.array_equal(np.diag(counts), y.sum(0))
    mined = co.mining_tables(labels, names, algorithm="apriori", min_support=0.05, max_len=2, min_confidence=0.3)
    pair = mined["itemsets"].set_index("itemset").loc["0 1"]
    assert pair["names"] == f"{names[0]}; {names[1]}" and pair["count"] == (y[:, 0] & y[:, 1]).sum()
    assert set(mined["rules"]["antecedent_names"]) <= set(names)
    counted = co.class_counts_table(labels, ["kaggle"], names)
    assert list(counted["name"]) == list(names) and counted["all"].tolist() == y.sum(0).tolist()
    groups = co.class_groups(counts, 3, "spectral", names)
    assert sorted(k for g in groups["groups"] for k in g["classes"]) == list(range(n)) and groups["n_groups"] <= 3
    assert all(g["names"] == [names[k] for k in g["classes"]] for g in groups["groups"])
    # More groups than classes: at most one class a group, logged, not refused.
    assert co.class_groups(counts, n + 5, "hierarchical", names)["n_groups"] <= n
    weights = co.sampling_weights(y.sum(0), len(y), names, power=0.5, cap=10.0)
    assert list(weights["name"]) == list(names) and weights["weight"].min() == 1.0


def test_the_cooccurrence_stage_refuses_names_that_do_not_fit_the_counts():
    labels, _ = labelled(SIX)
    counts = co.cooccurrence_counts(co.label_matrix(labels, 6))
    with pytest.raises(InputError, match="shape \\(6, 6\\) for 19 classes"):
        co.class_groups(counts, 3, "spectral", NINETEEN.classes)
    with pytest.raises(ValueError, match="for 19 class names"):
        co.matrix_table(counts, NINETEEN.classes)


@pytest.mark.parametrize("vocab, grid", [(SIX, (1, 6)), (NINETEEN, (3, 7)), (HPA, (4, 7))])
def test_threshold_curves_get_a_panel_per_class_on_a_grid_of_sevens(vocab, grid, monkeypatch):
    saved = captured(monkeypatch)
    labels, y = labelled(vocab)
    probs = np.clip(0.5 * y + 0.5 * np.random.default_rng(1).random(y.shape), 0, 1)
    curves.threshold_curves(probs, y, [0.5] * vocab.n_classes, vocab.classes, "unused.png")
    axes = np.array(saved[0].axes).reshape(grid)
    shown = [ax for ax in axes.flat if ax.axison]
    assert len(shown) == vocab.n_classes and shown[-1].get_title().startswith(f"{vocab.n_classes - 1} ")
    assert saved[0].get_size_inches().tolist() == [3 * grid[1], 2.75 * grid[0]]
    plt.close("all")


@SIZES
def test_the_label_and_confusion_figures_label_every_class(vocab, monkeypatch):
    saved = captured(monkeypatch)
    names, n = vocab.classes, vocab.n_classes
    labels, y = labelled(vocab)
    counts = co.cooccurrence_counts(y)
    groups = co.class_groups(counts, 3, "spectral", names)
    label_figures.cooccurrence_heatmap(counts, groups, names, "unused.png")
    label_figures.class_frequency_chart(co.class_counts_table(labels, ["kaggle"], names), "unused.png")
    predicted = labels.assign(Predicted=matrix_to_labels(y[::-1]))
    post_figures.confusion_figure({"oof": predicted, "test": predicted}, names, "unused.png")
    heatmap, frequency, confusion = saved
    assert len(heatmap.axes[0].get_xticklabels()) == n and len(frequency.axes[0].get_yticklabels()) == n
    panels = [ax for ax in confusion.axes if ax.get_title() in ("oof", "test")]
    assert len(panels) == 2 and all(len(ax.get_xticklabels()) == n + 1 for ax in panels)
    assert panels[0].get_yticklabels()[-1].get_text().startswith(f"{n - 1} {names[-1]} (")
    with pytest.raises(ValueError, match=f"of {n} classes, 28 class names"):
        label_figures.cooccurrence_heatmap(counts, groups, HPA.classes, "unused.png")
    plt.close("all")


@pytest.fixture(params=[SIX, NINETEEN], ids=["6 classes", "19 classes"])
def members(request, tmp_path):
    """Two models' fold tables over a vocabulary: 'good' sees classes 0..2 and 'half' the rest."""
    vocab = request.param
    labels, y = labelled(vocab, n=200)
    folds = pd.DataFrame({"Id": labels["Id"], "fold": np.arange(len(labels)) % 2})
    rng = np.random.default_rng(2)
    sees = {"good": np.arange(vocab.n_classes) < 3, "half": np.arange(vocab.n_classes) >= 3}
    paths = {}
    for name, seen in sees.items():
        probs = np.where(seen, 0.7 * y + 0.3 * rng.random(y.shape), rng.random(y.shape))
        paths[name] = {"oof": [], "test": []}
        for k in (0, 1):
            rows = folds["fold"].to_numpy() == k
            for kind, ids, p in (("oof", labels["Id"][rows], probs[rows]), ("test", ["t0", "t1", "t2"], probs[:3])):
                path = tmp_path / f"{name}{k}_{kind}.csv"
                probability_table(ids, p).to_csv(path, index=False)
                paths[name][kind].append(str(path))
    return vocab, paths, labels, folds, y


def test_blending_by_groups_names_each_class_of_the_vocabulary(members, tmp_path):
    vocab, paths, labels, folds, y = members
    groups_file = tmp_path / "class_groups.yaml"
    counts = co.cooccurrence_counts(y)
    co.write_yaml(co.class_groups(counts, 2, "spectral", vocab.classes), groups_file)
    from_file = resolve_groups("cooccurrence", vocab, groups_file)
    assert sorted(k for g in from_file for k in g) == list(range(vocab.n_classes))
    groups = [[0, 1, 2], list(range(3, vocab.n_classes))]  # the members' strengths, as a user would list them
    oof, test, how = combine(paths, labels, "groups", groups=groups, classes=vocab.classes)
    assert list(how["sources"]) == list(vocab.classes)
    assert [how["sources"][name] for name in vocab.classes[:3]] == ["good"] * 3
    assert set(how["sources"][name] for name in vocab.classes[3:]) == {"half"}
    assert prob_matrix(oof).shape == (len(labels), vocab.n_classes) and len(test) == 3
    with pytest.raises(ValueError, match=f"source for {vocab.n_classes} classes, the probabilities have 28"):
        apply_combination({"good": np.zeros((2, 28)), "half": np.zeros((2, 28))}, how)
    with pytest.raises(ValueError, match="the vocabulary has 28"):
        combine(paths, labels, "mean", classes=HPA.classes)


def test_thresholds_and_the_submission_follow_the_vocabulary(members):
    vocab, paths, labels, folds, y = members
    oof, test, _ = combine(paths, labels, "mean", classes=vocab.classes)
    record, per_class, methods, table = fit_thresholds(oof, labels, folds, "per_class", classes=vocab.classes)
    assert len(record["thresholds"]) == vocab.n_classes == len(record["train_frequency"])
    assert list(per_class["name"]) == list(vocab.classes)
    assert set(methods["method"]) >= {*th.METHODS, "fixed_0.5"}
    assert table.loc[0, "target_names"] == "; ".join(vocab.classes[int(k)] for k in table.loc[0, "Target"].split())
    sub = submission(test, record, ["t0", "t1", "t2", "unreadable"])
    assert sub["Predicted"].iloc[-1] == "" and all(int(k) < vocab.n_classes for p in sub["Predicted"] for k in p.split())
    truth = pd.DataFrame({"Id": sub["Id"], "Target": labels["Target"][:4].to_numpy()})
    named = submission_table(sub, test, vocab.classes, truth)
    assert list(named.columns[-vocab.n_classes:]) == prob_columns(vocab.n_classes)
    assert named["read"].tolist() == [True, True, True, False]
    y_true, y_pred = submission_matrices(sub, truth, vocab.n_classes)
    assert y_true.shape == y_pred.shape == (4, vocab.n_classes)
    with pytest.raises(ValueError, match="the vocabulary has 28"):
        fit_thresholds(oof, labels, folds, "per_class", classes=HPA.classes)


@SIZES
def test_the_report_counts_the_vocabulary_s_classes(vocab):
    labels, y = labelled(vocab)
    table = class_table(labels, vocab.classes)
    assert list(table["name"]) == list(vocab.classes) and table["train_images"].tolist() == y.sum(0).tolist()
    assert classes_page(table).startswith(f".. csv-table:: The {vocab.n_classes} classes and their frequency")


def test_a_preset_of_the_hpa_classes_is_refused_for_another_vocabulary():
    assert sorted(k for g in resolve_groups("ntu", HPA) for k in g) == list(range(28))
    with pytest.raises(ValueError, match="the preset 'ntu' groups the 2018 HPA task's 28 classes by number, and "
                                         "this dataset's 6 classes"):
        resolve_groups("ntu", SIX)
    with pytest.raises(ValueError, match=r"each of the 6 classes \(0..5\) .* missing \[5\], repeated \[\], out of "
                                         r"range \[6\]"):
        check_partition([[0, 1, 2], [3, 4, 6]], 6)


def dag_checks(config):
    """common.smk's checks of a config (as test_config.startup_checks runs them)."""
    from snakemake.utils import validate

    from hpa.config.checks import check_config, schema_defaults

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    given = copy.deepcopy(config)
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    models = {n: schema_defaults(schema, "model") | m for n, m in config["models"].items()}
    ensembles = {n: schema_defaults(schema, "ensemble") | e for n, e in config["ensembles"].items()}
    return check_config(given, config, models, ensembles, Vocabulary.from_config(config))


def six_class_config(**ensemble):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["labels"] = {"names": list(SIX.classes)}
    config["external"] = {"use": False}  # the HPAv18 images are the 28 classes' (refused with six)
    config["ensembles"] = {"grouped": {"models": [next(iter(config["models"]))], "combine": "groups", **ensemble}}
    return config


def test_the_dag_refuses_what_does_not_fit_the_vocabulary():
    dag_checks(six_class_config())  # cooccurrence groups: whatever the labels give
    dag_checks(six_class_config(groups=[[0, 1, 2], [3, 4, 5]]))
    with pytest.raises(ValueError, match="ensembles.grouped.groups: the preset 'ntu' groups the 2018 HPA task's"):
        dag_checks(six_class_config(groups="ntu"))
    with pytest.raises(ValueError, match=r"ensembles.grouped.groups must put each of the 6 classes .*range \[27\]"):
        dag_checks(six_class_config(groups=[[0, 1, 2], [3, 4, 5, 27]]))
    config = six_class_config()
    config["analysis"] = {"n_groups": 7}
    with pytest.raises(ValueError, match="analysis.n_groups: 7 groups of 6 classes"):
        dag_checks(config)
    config = six_class_config()
    config.pop("labels")  # the HPA 28: twelve groups are fine (the schema's old maximum of 28 is gone)
    config["analysis"] = {"n_groups": 12}
    dag_checks(config)


@pytest.mark.parametrize("vocab", [SIX, NINETEEN], ids=["6 classes", "19 classes"])
def test_a_classifier_has_one_output_per_class_and_its_checkpoint_says_how_many(vocab, tmp_path):
    import torch

    from hpa.config.spec import TrainConfig
    from hpa.inference.tta import predict_views
    from hpa.models.factory import build_model
    from hpa.runtime.checkpoint import checkpoint_vocabulary, load_checkpoint
    from hpa.runtime.loader import CachedImages, make_loader
    from hpa.training.classifier import fit_fold

    rng = np.random.default_rng(0)
    cache = rng.integers(0, 255, size=(8, 4, 16, 16), dtype=np.uint8)
    _, y = labelled(vocab, n=8)
    rows = np.arange(8)
    _, oof = fit_fold(TrainConfig(epochs=1, batch_size=4), cache, rows, y.astype(np.uint8), rows,
                      y.astype(np.uint8), {"mean": [0.1] * 4, "std": [0.2] * 4}, vocabulary=vocab,
                      checkpoint_path=tmp_path / "m.pt")
    assert oof.shape == (8, vocab.n_classes)
    model, ckpt = load_checkpoint(tmp_path / "m.pt", torch.device("cpu"))
    assert checkpoint_vocabulary(ckpt["config"]) == vocab
    views = predict_views(model, make_loader(CachedImages(cache, rows), 4), torch.device("cpu"), [0, 1],
                          n_classes=vocab.n_classes)
    assert views.shape == (2, 8, vocab.n_classes)
    empty = predict_views(model, [], torch.device("cpu"), [0], n_classes=vocab.n_classes)
    assert empty.shape == (1, 0, vocab.n_classes)
    with pytest.raises(TypeError, match="num_classes"):
        build_model("resnet18", rgb_source=vocab.rgb_source())  # no silent HPA 28


def test_every_rule_whose_script_reads_the_vocabulary_declares_it():
    """A script reading snakemake.input.vocabulary runs in a rule with vocabulary=VOCABULARY among its
    inputs, so that changing labels: reruns it (and a rule declaring it has a script that reads it)."""
    import re

    reads = {p.name for p in (REPO / "workflow/scripts").glob("*.py") if "snakemake.input.vocabulary" in p.read_text()}
    declares = set()
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', block)
            if script and "vocabulary=VOCABULARY" in block.split("output:")[0]:
                declares.add(script.group(1))
    assert {"blend.py", "fit_thresholds.py", "train.py", "count_labels.py"} <= reads
    assert reads - {"vocabulary.py"} == declares

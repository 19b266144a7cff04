import numpy as np
import pandas as pd
import pytest

from hpa import thresholds as th
from hpa.classes import CLASS_NAMES, HPA, class_names
from hpa.metrics import class_confusion, macro_f1, no_skill_macro_f1, score_with_interval
from hpa.postprocess.blend import combine, resolve_groups
from hpa.postprocess.evaluation import comparison_table, evaluate_on_test
from hpa.postprocess.predictions import submission_table
from hpa.postprocess.submission import fit_thresholds, submission, submission_matrices
from hpa.tables import labels_to_matrix, matrix_to_labels, prob_columns

PROB_COLUMNS = prob_columns(28)


def write_probs(path, ids, probs):
    table = pd.DataFrame(probs, columns=PROB_COLUMNS).assign(Id=np.asarray(ids))[["Id", *PROB_COLUMNS]]
    table.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def two_models(tmp_path):
    """Model 'good' sees the labels through noise; model 'noise' sees nothing. Two folds each."""
    rng = np.random.default_rng(0)
    n = 200
    y = rng.random((n, 28)) < 0.15
    ids = [f"i{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"Id": ids, "Target": matrix_to_labels(y)})
    labels = labels[labels["Target"] != ""]
    keep = labels.index.to_numpy()
    folds = pd.DataFrame({"Id": labels["Id"], "fold": np.arange(len(labels)) % 2})
    test_ids = [f"t{i}" for i in range(30)]
    members = {}
    for name, signal in (("good", 0.6), ("noise", 0.0)):
        members[name] = {"oof": [], "test": []}
        probs = np.clip(signal * y[keep] + (1 - signal) * rng.random((len(keep), 28)), 0, 1)
        for k in (0, 1):
            rows = folds["fold"].to_numpy() == k
            members[name]["oof"].append(write_probs(tmp_path / f"{name}{k}_oof.csv", labels["Id"][rows], probs[rows]))
            members[name]["test"].append(write_probs(tmp_path / f"{name}{k}_test.csv", test_ids, rng.random((30, 28))))
    return members, labels, folds, y[keep]


def test_mean_combination_averages_models_and_folds(two_models):
    members, labels, folds, _ = two_models
    oof, test, how = combine(members, labels, "mean", classes=CLASS_NAMES)
    good = pd.concat([pd.read_csv(p) for p in members["good"]["oof"]]).set_index("Id")
    noise = pd.concat([pd.read_csv(p) for p in members["noise"]["oof"]]).set_index("Id")
    expected = ((good + noise) / 2).loc[oof["Id"], PROB_COLUMNS].to_numpy()
    assert np.allclose(oof[PROB_COLUMNS].to_numpy(), expected, atol=1e-6)
    assert len(test) == 30 and how["weights"] == {"good": 0.5, "noise": 0.5}


def test_fitted_weights_trust_the_informative_model(two_models):
    members, labels, _, _ = two_models
    _, _, how = combine(members, labels, "weighted", weights="fit", classes=CLASS_NAMES)
    assert how["weights"]["good"] > 0.8


def test_group_combination_takes_each_group_from_its_best_member(two_models):
    members, labels, _, _ = two_models
    oof, _, how = combine(members, labels, "groups", groups=[list(range(14)), list(range(14, 28))],
                          classes=CLASS_NAMES)
    assert set(how["sources"].values()) == {"good"}
    good = pd.concat([pd.read_csv(p) for p in members["good"]["oof"]]).set_index("Id")
    assert np.allclose(oof[PROB_COLUMNS].to_numpy(), good.loc[oof["Id"], PROB_COLUMNS].to_numpy(), atol=1e-6)


def test_fit_thresholds_reports_every_method_in_sample_and_honest(two_models):
    members, labels, folds, _ = two_models
    oof, _, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, per_class, methods, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES)
    assert record["method"] == "per_class" and len(record["thresholds"]) == 28
    assert record["oof_macro_f1"] >= record["honest_macro_f1"]
    assert set(methods["method"]) == set(th.METHODS) | {"fixed_0.5"}
    assert methods.loc[methods["chosen"], "method"].tolist() == ["per_class"]
    assert per_class["f1"].mean() == pytest.approx(record["oof_macro_f1"], abs=1e-3)
    low, high = record["honest_macro_f1_interval"]
    assert low < record["honest_macro_f1"] < high
    assert record["no_skill_macro_f1"] == pytest.approx(methods["no_skill_macro_f1"].iloc[0])
    assert (methods["honest_low"] <= methods["honest_macro_f1"]).all()
    assert (methods["honest_macro_f1"] <= methods["honest_high"]).all()
    again, _, _, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES)
    assert again == record, "seeded: a rerun prints the same intervals"


def test_submission_covers_every_id_and_matches_distribution_on_test(two_models):
    members, labels, folds, _ = two_models
    oof, test, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, _, _, _ = fit_thresholds(oof, labels, folds, "match_distribution", classes=CLASS_NAMES)
    sub = submission(test, record, sorted(test["Id"]) + ["unreadable"])
    assert len(sub) == 31 and sub.set_index("Id").at["unreadable", "Predicted"] == ""
    predicted = np.zeros((30, 28), dtype=bool)
    for i, p in enumerate(sub["Predicted"][:30]):
        predicted[i, [int(c) for c in p.split()]] = True
    freq = np.asarray(record["train_frequency"])
    assert np.allclose(predicted.mean(0), freq, atol=1 / 30 + 1e-9)


def test_ntu_preset_groups_partition_the_classes_and_pick_a_member_per_group(tmp_path):
    groups = resolve_groups("ntu", HPA)
    assert len(groups) == 4 and sorted(k for g in groups for k in g) == list(range(28))
    rng = np.random.default_rng(1)
    n = 240
    y = rng.random((n, 28)) < 0.2
    y[~y.any(1), 0] = True
    ids = [f"i{i:03d}" for i in range(n)]
    labels = pd.DataFrame({"Id": ids, "Target": matrix_to_labels(y)})
    nucleus = np.zeros(28, bool)
    nucleus[list(groups[0])] = True
    members = {}
    # "nuclear" sees only the nucleus group's labels, "rest" only the other classes'.
    for name, sees in (("nuclear", nucleus), ("rest", ~nucleus)):
        probs = np.where(sees, 0.7 * y + 0.3 * rng.random((n, 28)), rng.random((n, 28)))
        members[name] = {"oof": [write_probs(tmp_path / f"{name}.csv", ids, probs)],
                         "test": [write_probs(tmp_path / f"{name}_t.csv", ids[:5], probs[:5])]}
    _, _, how = combine(members, labels, "groups", groups=groups, classes=CLASS_NAMES)
    sources = list(how["sources"].values())
    assert [sources[k] for k in groups[0]] == ["nuclear"] * len(groups[0])
    assert {sources[k] for g in groups[1:] for k in g} == {"rest"}


@pytest.mark.parametrize("spec, message", [
    ([[0, 1], [2]], "missing"),
    ([list(range(28)), [3]], "repeated"),
    ("nto", "not a preset"),
])
def test_bad_groups_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_groups(spec, HPA)


def test_comparison_table_ranks_ensembles_by_honest_f1_and_sums_job_times(tmp_path):
    def tsv(name, *seconds):
        path = tmp_path / f"{name}.tsv"
        path.write_text("s\th:m:s\n" + "".join(f"{s}\t0:00:00\n" for s in seconds))
        return str(path)

    def record(oof, honest):
        return {"method": "per_class", "oof_macro_f1": oof, "honest_macro_f1": honest}

    table = comparison_table({
        "a": {"models": ["m1"], "thresholds": record(0.5, 0.2), "evaluation": {"test_macro_f1": 0.25},
              "train_tsv": [tsv("a0", 10.0), tsv("a1", 12.5)], "predict_tsv": [tsv("ap", 1.0)]},
        "b": {"models": ["m1", "m2"], "thresholds": record(0.4, 0.3), "evaluation": None,
              "train_tsv": [tsv("b0", 3.0)], "predict_tsv": [tsv("bp", 2.0, 2.0)]},
    })
    assert table["ensemble"].tolist() == ["b", "a"]
    a = table.set_index("ensemble").loc["a"]
    assert a["train_s"] == 22.5 and a["predict_s"] == 1.0 and a["test_macro_f1"] == 0.25
    assert table.set_index("ensemble").loc["b", "models"] == "m1 m2"


def test_comparison_table_carries_intervals_no_skill_and_paired_differences_to_the_best(tmp_path, rng):
    tsv = tmp_path / "job.tsv"
    tsv.write_text("s\th:m:s\n1.0\t0:00:01\n")
    y = rng.random((300, 28)) < 0.1
    good = y ^ (rng.random(y.shape) < 0.02)
    poor = y ^ (rng.random(y.shape) < 0.2)

    def entry(pred, honest):
        s = score_with_interval(y, pred)
        evaluation = {"test_macro_f1": s["macro_f1"], "test_macro_f1_interval": [s["low"], s["high"]],
                      "test_no_skill_macro_f1": s["no_skill"]}
        record = {"method": "per_class", "oof_macro_f1": honest + 0.05, "honest_macro_f1": honest,
                  "honest_macro_f1_interval": [honest - 0.02, honest + 0.02], "no_skill_macro_f1": 0.1}
        return {"models": ["m"], "thresholds": record, "evaluation": evaluation,
                "train_tsv": [str(tsv)], "predict_tsv": [str(tsv)]}

    table = comparison_table({"poor": entry(poor, 0.3), "good": entry(good, 0.6)},
                             {"poor": poor, "good": good}, y).set_index("ensemble")
    assert table.index.tolist() == ["good", "poor"]
    assert table.loc["good", "test_minus_best"] == 0
    assert table.loc["poor", "minus_best_high"] < 0 < table.loc["good", "test_macro_f1"] - table.loc["poor", "test_macro_f1"]
    assert table.loc["poor", "test_low"] < table.loc["poor", "test_macro_f1"] < table.loc["poor", "test_high"]
    assert table.loc["good", "test_no_skill"] == pytest.approx(no_skill_macro_f1(y))
    assert table.loc["good", "honest_low"] == pytest.approx(0.58)


def test_one_score_carries_one_interval_in_every_table(two_models):
    """The chosen method's honest and test F1 get the same interval in the thresholds record, the
    methods tables and the evaluation, also with shrunk thresholds and an unreadable test image."""
    members, labels, folds, _ = two_models
    oof, test, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, _, methods, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES, shrink_factor=0.7)
    chosen = methods.set_index("method").loc["per_class"]
    assert [chosen["honest_low"], chosen["honest_high"]] == record["honest_macro_f1_interval"]
    assert chosen["honest_macro_f1"] == record["honest_macro_f1"]
    rng = np.random.default_rng(3)
    ids = sorted(test["Id"]) + ["unreadable"]
    truth = pd.DataFrame({"Id": ids[::-1], "Target": matrix_to_labels(rng.random((len(ids), 28)) < 0.2)})
    sub = submission(test, record, ids)
    summary, per_method = evaluate_on_test(submission=sub, record=record, oof=oof, test=test, labels=labels,
                                           folds=folds, methods=methods, truth=truth)
    row = per_method.set_index("method").loc["per_class"]
    recomputed = macro_f1(*submission_matrices(sub, truth, 28))
    assert row["test_macro_f1"] == summary["test_macro_f1"] == pytest.approx(recomputed, abs=1e-6)
    assert [row["test_low"], row["test_high"]] == summary["test_macro_f1_interval"]
    assert summary["n_test_images"] == len(ids)


def test_per_class_table_carries_the_honest_f1_with_intervals(two_models):
    members, labels, folds, _ = two_models
    oof, _, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, per_class, _, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES)
    assert per_class["honest_f1"].mean() == pytest.approx(record["honest_macro_f1"], abs=1e-3)
    assert (per_class["honest_low"] <= per_class["honest_f1"]).all()
    assert (per_class["honest_f1"] <= per_class["honest_high"]).all()
    assert (per_class["honest_low"] < per_class["honest_high"]).any()


def test_oof_prediction_table_lists_true_predicted_missed_and_extra_classes_by_name(two_models):
    members, labels, folds, _ = two_models
    oof, _, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, _, _, table = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES)
    assert list(table.columns[:8]) == ["Id", "fold", "Target", "target_names", "Predicted", "predicted_names",
                                       "missed", "extra"]
    assert list(table["Id"]) == list(oof["Id"]) and list(table.columns[8:]) == PROB_COLUMNS
    truth = labels.set_index("Id").loc[table["Id"], "Target"]
    assert list(table["Target"]) == list(truth)
    assert macro_f1(labels_to_matrix(table["Target"], 28), labels_to_matrix(table["Predicted"], 28)) == pytest.approx(
        record["honest_macro_f1"], abs=1e-6), "Predicted holds the honest predictions"
    for row in table.itertuples():
        true, pred = set(row.Target.split()), set(row.Predicted.split())
        assert row.missed == class_names(sorted(int(c) for c in true - pred))
        assert row.extra == class_names(sorted(int(c) for c in pred - true))
        assert row.target_names == class_names(int(c) for c in row.Target.split())


def test_test_prediction_table_follows_the_submission_and_flags_unread_images(two_models):
    members, labels, folds, _ = two_models
    oof, test, _ = combine(members, labels, "mean", classes=CLASS_NAMES)
    record, _, _, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASS_NAMES)
    ids = sorted(test["Id"]) + ["unreadable"]
    sub = submission(test, record, ids)
    table = submission_table(sub, test, CLASS_NAMES)
    assert "Target" not in table and list(table["Predicted"]) == list(sub["Predicted"])
    assert table.set_index("Id")["read"].to_dict() == {i: i != "unreadable" for i in ids}
    truth = pd.DataFrame({"Id": ids, "Target": ["0 25"] * len(ids)})
    labelled = submission_table(sub, test, CLASS_NAMES, truth).set_index("Id")
    assert labelled.at["unreadable", "missed"] == "Nucleoplasm; Cytosol" and labelled.at["unreadable", "extra"] == ""
    # A rejected test row is unread and has no scored label (test_labels keeps the kept images'): no error.
    unlabelled = submission_table(sub, test, CLASS_NAMES, truth[truth["Id"] != "unreadable"]).set_index("Id")
    assert unlabelled.at["unreadable", "Target"] == "" and not unlabelled.at["unreadable", "read"]
    with pytest.raises(ValueError, match=f"lack Id {ids[0]}"):  # one that was read must have its label
        submission_table(sub, test, CLASS_NAMES, truth[truth["Id"] != ids[0]])


def test_class_confusion_counts_the_classes_predicted_in_place_of_each_true_class():
    y = np.zeros((4, 28), bool)
    pred = np.zeros((4, 28), bool)
    y[:, 7] = True  # four Golgi images: two predicted ER only, one Golgi, one nothing
    pred[0, 6] = pred[1, 6] = pred[2, 7] = True
    y[3, 0] = True  # the fourth also holds Nucleoplasm, which is not predicted either
    shares, n = class_confusion(y, pred)
    assert n[7] == 4 and n[0] == 1 and shares.shape == (28, 29)
    assert shares[7, 6] == 0.5 and shares[7, 7] == 0.25 and shares[7, 28] == 0.25
    assert shares[0, 28] == 1.0 and shares[0, 0] == 0.0
    assert shares[5].sum() == 0  # a class without images: an empty row

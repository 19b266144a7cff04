"""Label transfer from nearest neighbours: the similarity threshold fit, replace and mean, the rule's tables."""

import numpy as np
import pandas as pd
import pytest

from hpa.postprocess.transfer import (
    TransferSettings,
    apply_transfer,
    fit_similarity_threshold,
    threshold_score,
    transfer_labels,
)
from hpa.tables import labels_to_matrix, matrix_to_labels, prob_columns, probability_table

PROB_COLUMNS = prob_columns(28)


def planted_transfer_problem(rng, n=600, cut=0.7):
    """A weak classifier; neighbours whose labels are right exactly when the similarity is >= cut."""
    y = np.zeros((n, 28), dtype=bool)
    y[np.arange(n), rng.integers(0, 28, n)] = True
    y[np.arange(n), rng.integers(0, 28, n)] = True
    probs = np.clip(0.25 * y + rng.uniform(0, 0.75, y.shape), 0, 1)
    similarity = rng.uniform(0, 1, n)
    wrong = np.roll(y, 5, axis=1)  # another label set, every class wrong
    neighbour_y = np.where((similarity >= cut)[:, None], y, wrong).astype(np.uint8)
    return probs, y, neighbour_y, similarity


PER_CLASS = TransferSettings()


@pytest.mark.parametrize("mode", ["replace", "mean"])
def test_threshold_fit_recovers_a_planted_cut_and_raises_oof_f1(rng, mode):
    probs, y, neighbour_y, similarity = planted_transfer_problem(rng)
    score = threshold_score(y, y.mean(0), PER_CLASS)
    cut, table = fit_similarity_threshold(probs, y, neighbour_y, similarity, score, mode, 0.7)
    assert cut is not None and abs(cut - 0.7) < 0.03
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["oof_macro_f1"] > table["oof_macro_f1"].iloc[0] + 0.1  # the never-transfer row
    assert chosen["same_label_set"] > 0.95


@pytest.mark.parametrize("mode", ["replace", "mean"])
def test_transfer_never_lowers_oof_f1_and_wrong_neighbours_are_never_taken(rng, mode):
    _, y, _, similarity = planted_transfer_problem(rng)
    wrong = np.roll(y, 3, axis=1).astype(np.uint8)
    score = threshold_score(y, y.mean(0), PER_CLASS)
    # A classifier that separates every class: any wrong transfer can only hurt.
    separable = 0.6 * y + rng.uniform(0, 0.35, y.shape)
    cut, table = fit_similarity_threshold(separable, y, wrong, similarity, score, mode, 0.5)
    assert cut is None and score(separable) == table["oof_macro_f1"].max() == 1.0
    # A weak one: wrong labels can still help by zeroing its false positives, but never below no transfer.
    weak = np.clip(0.25 * y + rng.uniform(0, 0.75, y.shape), 0, 1)
    cut, table = fit_similarity_threshold(weak, y, wrong, similarity, score, mode, 0.5)
    assert table.loc[table["chosen"], "oof_macro_f1"].iloc[0] == table["oof_macro_f1"].max() >= score(weak)


def test_replace_and_mean_change_only_the_transferred_rows():
    probs = np.array([[0.2, 0.9], [0.4, 0.6], [0.7, 0.1]])
    neighbour = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    mask = np.array([True, False, True])
    assert np.allclose(apply_transfer(probs, neighbour, mask, "replace"), [[1, 0], [0.4, 0.6], [1, 1]])
    assert np.allclose(apply_transfer(probs, neighbour, mask, "mean", 0.25),
                       [[0.4, 0.675], [0.4, 0.6], [0.775, 0.325]])
    with pytest.raises(ValueError, match="transfer_mode"):
        apply_transfer(probs, neighbour, mask, "median")


def test_transfer_labels_applies_the_oof_cut_to_test(rng):
    probs, y, neighbour_y, similarity = planted_transfer_problem(rng, n=300)
    ids = np.array([f"i{k}" for k in range(300)])
    labels = pd.DataFrame({"Id": ids, "Target": matrix_to_labels(y)})
    folds = pd.DataFrame({"Id": ids, "fold": np.arange(300) % 3})
    test_sim = np.array([0.99, 0.75, 0.5, 0.1])
    neighbours = pd.concat([
        pd.DataFrame({"Id": ids, "split": "oof", "neighbour": ids[::-1], "similarity": similarity,
                      "neighbour_target": matrix_to_labels(neighbour_y)}),
        pd.DataFrame({"Id": [f"t{k}" for k in range(4)], "split": "test", "neighbour": ids[:4],
                      "similarity": test_sim, "neighbour_target": ["3", "4 5", "6", "7"]}),
    ])
    test = probability_table([f"t{k}" for k in range(4)], np.full((4, 28), 0.3))
    new_oof, new_test, record, _ = transfer_labels(probability_table(ids, probs), test, neighbours, labels, folds,
                                                   TransferSettings(mode="replace"))
    assert abs(record["similarity_threshold"] - 0.7) < 0.03
    expected = np.full((4, 28), 0.3)
    expected[:2] = labels_to_matrix(["3", "4 5"], 28)
    assert np.allclose(new_test[PROB_COLUMNS].to_numpy(), expected)
    assert record["test"] == {"images": 4, "transferred": 2}
    assert record["oof"]["transferred"] == int((similarity >= record["similarity_threshold"]).sum())
    assert record["oof"]["macro_f1_after"] > record["oof"]["macro_f1_before"]
    assert record["oof"]["honest_macro_f1_after"] > record["oof"]["honest_macro_f1_before"]
    assert list(new_oof["Id"]) == list(ids) and list(new_oof.columns) == ["Id", *PROB_COLUMNS]

"""Searching the embeddings: chunked nearest neighbours and pairs, OOF and test neighbours, duplicate pairs."""

import numpy as np
import pandas as pd
import pytest

from hpa.embedding.neighbours import (
    duplicate_pairs,
    find_neighbours,
    mean_embedding,
    nearest,
    oof_neighbours,
    pairs_above,
    read_embeddings,
    write_embeddings,
)


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_chunked_nearest_neighbour_equals_brute_force(rng):
    queries, database = unit(rng, 37, 8), unit(rng, 53, 8)
    index, similarity = nearest(queries, database, max_block=3 * 53 + 5)  # 3 query rows per block
    brute = queries @ database.T
    assert np.array_equal(index, brute.argmax(1))
    assert np.allclose(similarity, brute.max(1), atol=1e-6)


def test_chunked_pairs_equal_brute_force(rng):
    emb = unit(rng, 41, 4)
    i, j, similarity = pairs_above(emb, 0.8, max_block=2 * 41)
    brute = emb @ emb.T
    expected = {(a, b) for a, b in zip(*np.nonzero(brute >= 0.8)) if a < b}
    assert set(zip(i.tolist(), j.tolist())) == expected and len(i) == len(expected) > 5
    assert np.allclose(similarity, brute[i, j], atol=1e-6)


def test_pairs_of_a_mean_embedding_are_exact_although_the_first_part_is_searched_first(rng):
    n, dim, k = 60, 16, 3
    parts = [unit(rng, n, dim) for _ in range(k)]
    # Rows 1 and 2: a cosine of 0.8 in the first part, equal in the others: a mean of 0.93.
    other = parts[0][2] - (parts[0][2] @ parts[0][1]) * parts[0][1]
    parts[0][2] = 0.8 * parts[0][1] + 0.6 * other / np.linalg.norm(other)
    parts[1][2], parts[2][2] = parts[1][1], parts[2][1]
    emb = (np.concatenate(parts, axis=1) / np.sqrt(k)).astype(np.float32)
    brute = emb @ emb.T
    expected = {(a, b) for a, b in zip(*np.nonzero(brute >= 0.9)) if a < b}
    i, j, similarity = pairs_above(emb, 0.9, max_block=7 * n, parts=k)
    assert (1, 2) in expected and set(zip(i.tolist(), j.tolist())) == expected
    assert np.allclose(similarity, brute[i, j], atol=1e-6)


def fold_embeddings(rng, n_train=30, n_test=7, dim=6, folds=2):
    train_ids = np.array([f"tr{i}" for i in range(n_train)])
    test_ids = np.array([f"te{i}" for i in range(n_test)])
    return {k: {"path": f"fold{k}.npz", "train_ids": train_ids, "train": unit(rng, n_train, dim),
                "test_ids": test_ids, "test": unit(rng, n_test, dim)} for k in range(folds)}


def test_oof_search_is_among_other_folds_in_the_folds_own_embedding(rng):
    embs = fold_embeddings(rng)
    ids = embs[0]["train_ids"]
    folds = pd.DataFrame({"Id": ids, "fold": np.arange(len(ids)) % 2})
    table = oof_neighbours(embs, folds).set_index("Id")
    fold_of = folds.set_index("Id")["fold"]
    for image in ids:
        k = fold_of[image]
        others = np.flatnonzero(folds["fold"].to_numpy() != k)
        sims = embs[k]["train"][others] @ embs[k]["train"][ids.tolist().index(image)]
        assert table.at[image, "neighbour"] == ids[others[sims.argmax()]]
        assert fold_of[table.at[image, "neighbour"]] != k
        assert np.isclose(table.at[image, "similarity"], sims.max(), atol=1e-6)


def test_test_search_uses_the_cosine_averaged_over_folds(rng):
    embs = fold_embeddings(rng, folds=3)
    labels = pd.DataFrame({"Id": embs[0]["train_ids"], "Target": "0"})
    folds = pd.DataFrame({"Id": embs[0]["train_ids"], "fold": np.arange(30) % 3})
    table = find_neighbours(embs, folds, labels)
    test = table[table["split"] == "test"].set_index("Id")
    mean_cos = np.mean([e["test"] @ e["train"].T for e in embs.values()], axis=0)
    assert (test["neighbour"].to_numpy() == embs[0]["train_ids"][mean_cos.argmax(1)]).all()
    assert np.allclose(test["similarity"], mean_cos.max(1), atol=1e-5)
    assert set(table["split"]) == {"oof", "test"} and (table["neighbour_target"] == "0").all()


def test_embeddings_round_trip_and_folds_must_agree(tmp_path, rng):
    emb = fold_embeddings(rng)[0]
    write_embeddings(tmp_path / "a.npz", emb["train_ids"], emb["train"], emb["test_ids"], emb["test"])
    back = read_embeddings(tmp_path / "a.npz")
    assert np.array_equal(back["train_ids"], emb["train_ids"]) and back["train"].dtype == np.float32
    shuffled = dict(back, path="b.npz", test_ids=back["test_ids"][::-1])
    with pytest.raises(ValueError, match="rerun embed"):
        mean_embedding([back, shuffled], "test")


def test_mean_embedding_of_two_splits_is_their_rows_in_order(rng):
    embs = list(fold_embeddings(rng, n_train=9, n_test=4, dim=5, folds=3).values())
    ids, both = mean_embedding(embs, "train", "test")
    parts = [mean_embedding(embs, split) for split in ("train", "test")]
    assert list(ids) == [*parts[0][0], *parts[1][0]]
    assert np.array_equal(both, np.concatenate([parts[0][1], parts[1][1]]))
    assert np.allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-6)  # K unit vectors side by side over sqrt(K)


def test_planted_near_copies_are_the_duplicates_found(rng):
    embs = fold_embeddings(rng, n_train=40, n_test=10, dim=64)
    copies = {(3, 17), (5, 40 + 2)}  # train-train, train-test (rows of train then test)
    for emb in embs.values():
        emb["train"][17] = emb["train"][3] + 0.05 * unit(rng, 1, 64)[0]
        emb["test"][2] = emb["train"][5] + 0.05 * unit(rng, 1, 64)[0]
        for split in ("train", "test"):
            emb[split] /= np.linalg.norm(emb[split], axis=1, keepdims=True)
    ids = np.concatenate([embs[0]["train_ids"], embs[0]["test_ids"]])
    manifest = pd.DataFrame({"Id": ids, "split": ["train"] * 40 + ["test"] * 10, "source": "demo",
                             "Target": ["0"] * 40 + [""] * 10})
    phash = pd.DataFrame({"cluster": [0, 0], "Id": ["tr3", "tr17"]})
    table = duplicate_pairs(list(embs.values()), manifest, 0.95, phash)
    assert {(a, b) for a, b in zip(table["Id_a"], table["Id_b"])} == {(ids[i], ids[j]) for i, j in copies}
    by_pair = table.set_index("Id_b")
    assert by_pair.at["tr17", "phash_cluster"] and not by_pair.at["te2", "phash_cluster"]
    assert by_pair.at["tr17", "same_labels"] and pd.isna(by_pair.at["te2", "same_labels"])
    assert table["phash_cluster"].notna().all()
    without = duplicate_pairs(list(embs.values()), manifest, 0.95, None)
    assert without["phash_cluster"].isna().all()

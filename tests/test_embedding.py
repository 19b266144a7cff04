"""Metric-learning label transfer: ArcFace, the embedding, neighbour search, transfer, duplicates, workflow."""

import copy
import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, TINY, job_counts, snakemake
from hpa.training.augment import AugmentConfig
from hpa.tables import labels_to_matrix, matrix_to_labels
from hpa.embedding.fit import fit_embedding
from hpa.embedding.job import embed_rows
from hpa.config_checks import schema_properties
from hpa.embedding.model import ArcMarginProduct, EmbeddingConfig, label_set_classes, load_embedder
from hpa.postprocess.submission import submission
from hpa.tables import PROB_COLUMNS, probability_table
from hpa.embedding.neighbours import duplicate_pairs, find_neighbours, mean_embedding, nearest, oof_neighbours, pairs_above, read_embeddings, write_embeddings
from hpa.postprocess.transfer import TransferSettings, apply_transfer, fit_similarity_threshold, threshold_score, transfer_labels

STATS = {"mean": [0.1] * 4, "std": [0.2] * 4}
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CPU networks run fastest on one thread, and keep their speed on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- config


def test_embedding_schema_defaults_are_the_code_defaults():
    props = schema_properties(SCHEMA, SCHEMA["properties"]["embedding"])
    defaults = dataclasses.asdict(EmbeddingConfig())
    search_keys = {"flips", "duplicate_similarity"}  # read by embed and embedding_duplicates, not training
    assert set(props) == set(defaults) | search_keys
    for name, value in defaults.items():
        if name != "augment":
            assert props[name]["default"] == value, name
    assert defaults["augment"] == dataclasses.asdict(AugmentConfig())
    ensemble = SCHEMA["$defs"]["ensemble"]["properties"]
    assert (ensemble["transfer"]["default"], ensemble["transfer_mode"]["default"]) == (False, "replace")


# ---------------------------------------------------------------- ArcFace


def arcface_by_hand(x, w, labels, s, m, easy_margin=False):
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    cos = np.clip(cos, -1, 1)
    out = s * cos
    for i, y in enumerate(labels):
        c = cos[i, y]
        if easy_margin:
            target = math.cos(math.acos(c) + m) if c > 0 else c
        elif math.acos(c) + m < math.pi:
            target = math.cos(math.acos(c) + m)
        else:  # past pi the logit continues linearly, never rising again
            target = c - m * math.sin(m)
        out[i, y] = s * target
    return out


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_puts_the_margin_on_the_target_column_only(easy_margin):
    torch.manual_seed(0)
    arc = ArcMarginProduct(6, 5, scale=16.0, margin=0.4, easy_margin=easy_margin)
    w = arc.weight.detach().numpy()
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    x[3] = -w[2]  # theta = pi for its target: theta + m is past pi
    labels = np.array([0, 3, 4, 2])
    got = arc(torch.from_numpy(x), torch.from_numpy(labels)).detach().numpy()
    assert np.allclose(got, arcface_by_hand(x, w, labels, 16.0, 0.4, easy_margin), atol=1e-4)
    plain = arc(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(plain, arcface_by_hand(x, w, labels, 16.0, 0.0), atol=1e-4)
    off_target = np.ones_like(got, dtype=bool)
    off_target[np.arange(4), labels] = False
    assert np.allclose(got[off_target], plain[off_target])
    target, margin_free = got[~off_target], plain[~off_target]
    assert (target <= margin_free + 1e-5).all() and (target < margin_free)[margin_free > 0].all()


def test_label_sets_below_min_class_size_are_left_out():
    classes, target = label_set_classes(["0", "0 25", "0", "27", "0 25", "0"], min_class_size=2)
    assert classes == ["0", "0 25"]
    assert target.tolist() == [0, 1, 0, -1, 1, 0]


# ---------------------------------------------------------------- the embedding

TOY_SETS = ["0", "2", "0 2"]


def toy_cache(n_per_set=16, size=32, seed=0):
    """Label set "0": a bright green square; "2": a bright blue bar; "0 2": both, on noise."""
    rng = np.random.default_rng(seed)
    label_sets = np.repeat(TOY_SETS, n_per_set)
    cache = rng.integers(0, 60, size=(len(label_sets), 4, size, size), dtype=np.uint8)
    for i, s in enumerate(label_sets):
        r, c = rng.integers(0, size - 12, 2)
        if "0" in s.split():
            cache[i, 1, r : r + 10, c : c + 10] = 220
        if "2" in s.split():
            cache[i, 2, :, c : c + 4] = 220
    order = rng.permutation(len(label_sets))
    return cache[order], label_sets[order]


def label_set_separation(emb, label_sets):
    """Mean cosine of same-label-set pairs minus that of different-label-set pairs."""
    sim = emb @ emb.T
    same = label_sets[:, None] == label_sets[None, :]
    off_diagonal = ~np.eye(len(emb), dtype=bool)
    return sim[same & off_diagonal].mean() - sim[~same].mean()


TOY_CFG = EmbeddingConfig(arch="resnet18", dim=16, epochs=6, batch_size=16, lr=3e-3, scale=16.0, seed=3)


@pytest.fixture(scope="module")
def toy_embedding(tmp_path_factory):
    """One embedding trained on 48 toy images; 24 more held out."""
    path = tmp_path_factory.mktemp("embedding") / "model.pt"
    cache, label_sets = toy_cache(n_per_set=24)
    train, held = np.arange(48), np.arange(48, 72)
    history = fit_embedding(TOY_CFG, cache, train, label_sets[train], STATS, checkpoint_path=path,
                            extra={"fold": 0, "image_size": 32})
    return path, cache, label_sets, train, held, history


def test_training_brings_same_label_sets_together(toy_embedding, tmp_path):
    path, cache, label_sets, train, held, history = toy_embedding
    model, ckpt = load_embedder(path, torch.device("cpu"))
    emb = embed_rows(model, cache, np.arange(len(cache)))
    separation = label_set_separation(emb[held], label_sets[held])
    index, _ = nearest(emb[held], emb[train])
    # 3 label sets: chance is 1/3. Over 15 seeds this toy reaches 0.83 to 1.0 (mean 0.96).
    assert (label_sets[train][index] == label_sets[held]).mean() >= 0.8
    # The same training on shuffled label sets: what augmentation and the images alone would give.
    shuffled = np.random.default_rng(5).permutation(label_sets[train])
    fit_embedding(TOY_CFG, cache, train, shuffled, STATS, checkpoint_path=tmp_path / "shuffled.pt")
    control = embed_rows(load_embedder(tmp_path / "shuffled.pt", torch.device("cpu"))[0], cache, held)
    assert separation > label_set_separation(control, label_sets[held]) + 0.15 and separation > 0.5
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert ckpt["config"]["classes"] == sorted(TOY_SETS) and ckpt["config"]["fold"] == 0


def test_embeddings_are_unit_float32_and_flip_invariant_with_flips(toy_embedding):
    path, cache, *_ = toy_embedding
    model, _ = load_embedder(path, torch.device("cpu"))
    rows = np.arange(8)
    emb = embed_rows(model, cache, rows, batch_size=3, flips=True)
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    mirrored = np.ascontiguousarray(cache[:8, :, :, ::-1])
    assert np.allclose(embed_rows(model, mirrored, rows, flips=True), emb, atol=1e-5)
    assert not np.allclose(embed_rows(model, mirrored, rows, flips=False), embed_rows(model, cache, rows, flips=False),
                           atol=1e-3)


def test_a_killed_embedding_run_resumes_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    import hpa.training.fit as module

    cfg = dataclasses.replace(TOY_CFG, epochs=2, dim=8)
    cache, label_sets = toy_cache(n_per_set=6, size=16)
    rows = np.arange(len(cache))
    fit_embedding(cfg, cache, rows, label_sets, STATS, checkpoint_path=tmp_path / "full/model.pt")
    real, calls = module.train_epoch, {"n": 0}

    def die_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_epoch", die_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit_embedding(cfg, cache, rows, label_sets, STATS, checkpoint_path=tmp_path / "killed/model.pt")
    assert (tmp_path / "killed/last.pt").exists()
    monkeypatch.setattr(module, "train_epoch", real)
    history = fit_embedding(cfg, cache, rows, label_sets, STATS, checkpoint_path=tmp_path / "killed/model.pt")
    assert list(history["epoch"]) == [1, 2] and not (tmp_path / "killed/last.pt").exists()
    full, resumed = (load_embedder(tmp_path / d / "model.pt", torch.device("cpu"))[0] for d in ("full", "killed"))
    assert np.allclose(embed_rows(full, cache, rows), embed_rows(resumed, cache, rows), atol=1e-5)


def test_too_few_repeated_label_sets_name_the_key(tmp_path):
    cache, _ = toy_cache(n_per_set=2, size=16)
    with pytest.raises(ValueError, match="embedding.min_class_size"):
        fit_embedding(TOY_CFG, cache, np.arange(6), ["0", "1", "2", "3", "4", "5"], STATS,
                      checkpoint_path=tmp_path / "model.pt")


# ---------------------------------------------------------------- neighbour search


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


# ---------------------------------------------------------------- transfer


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
    expected[:2] = labels_to_matrix(["3", "4 5"])
    assert np.allclose(new_test[PROB_COLUMNS].to_numpy(), expected)
    assert record["test"] == {"images": 4, "transferred": 2}
    assert record["oof"]["transferred"] == int((similarity >= record["similarity_threshold"]).sum())
    assert record["oof"]["macro_f1_after"] > record["oof"]["macro_f1_before"]
    assert record["oof"]["honest_macro_f1_after"] > record["oof"]["honest_macro_f1_before"]
    assert list(new_oof["Id"]) == list(ids) and list(new_oof.columns) == ["Id", *PROB_COLUMNS]


# ---------------------------------------------------------------- duplicates


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


# ---------------------------------------------------------------- the workflow

TRANSFER = copy.deepcopy(TINY)
TRANSFER["embedding"] = {"arch": "resnet18", "dim": 32, "epochs": 1, "batch_size": 8}
TRANSFER["ensembles"] = {"main": dict(TINY["ensembles"]["main"], transfer=True, transfer_mode="replace")}
EMBEDDING_RULES = {"train_embedding": 2, "embed": 2, "embedding_neighbours": 1, "transfer_labels": 1,
                   "embedding_duplicates": 1}


@pytest.fixture(scope="module")
def transfer_run(demo_run, tmp_path_factory):
    """A copy of the shared TINY run (conftest), then transfer turned on for its ensemble."""
    workdir = tmp_path_factory.mktemp("transfer_run")
    shutil.copytree(demo_run, workdir, symlinks=True, dirs_exist_ok=True)  # keeps mtimes: nothing is stale
    (workdir / "config.yaml").write_text(yaml.safe_dump(TRANSFER))
    result = snakemake(workdir)
    return workdir, job_counts(result.stdout + result.stderr)


@pytest.mark.workflow
def test_turning_transfer_on_adds_the_embedding_and_reuses_the_classifier(transfer_run):
    _, counts = transfer_run
    assert EMBEDDING_RULES.items() <= counts.items()
    assert not {"train", "predict", "blend", "cache_images"} & set(counts)
    assert {"fit_thresholds", "make_submission", "evaluate_test"} <= set(counts)


@pytest.mark.workflow
def test_workflow_submission_is_built_from_the_transferred_table(transfer_run):
    tmp_path, _ = transfer_run
    results = tmp_path / "results"
    fold0 = read_embeddings(results / "embedding/fold0/embeddings.npz")
    cache_ids = pd.read_csv(results / "cache/train.csv", dtype={"Id": str}).query("ok")["Id"]
    assert list(fold0["train_ids"]) == list(cache_ids) and fold0["train"].shape[1] == 32
    assert np.allclose(np.linalg.norm(fold0["test"], axis=1), 1, atol=1e-5)

    blended = pd.read_csv(results / "ensembles/main/test.csv", dtype={"Id": str})
    moved = pd.read_csv(results / "ensembles/main/transfer/test.csv", dtype={"Id": str})
    assert list(moved.columns) == ["Id", *PROB_COLUMNS] and list(moved["Id"]) == list(blended["Id"])
    record = json.loads((results / "ensembles/main/transfer/transfer.json").read_text())
    changed = ~np.isclose(moved[PROB_COLUMNS], blended[PROB_COLUMNS]).all(axis=1)
    assert changed.sum() == record["test"]["transferred"]
    thresholds = json.loads((results / "thresholds/main.json").read_text())
    # fit_thresholds scored the transferred OOF table (as rounded in its CSV), not the blended one.
    assert thresholds["oof_macro_f1"] == pytest.approx(record["oof"]["macro_f1_after"], abs=1e-4)
    assert record["oof"]["macro_f1_after"] >= record["oof"]["macro_f1_before"]

    sub = pd.read_csv(results / "submission/main.csv", dtype=str, keep_default_na=False)
    assert sub.equals(submission(moved, thresholds, list(sub["Id"])))
    plan = snakemake(tmp_path, "-n", "--forcerun", "make_submission", "evaluate_test").stdout
    for rule in ("make_submission", "evaluate_test"):
        block = plan.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        assert "results/ensembles/main/transfer/test.csv" in block, block

    duplicates = pd.read_csv(results / "embedding/duplicates.csv", dtype={"Id_a": str, "Id_b": str})
    assert list(duplicates.columns)[:3] == ["Id_a", "Id_b", "similarity"]
    assert (duplicates["similarity"] >= 0.95).all() and duplicates["phash_cluster"].notna().all()
    for rule in ("train_embedding/fold0", "embed/fold1", "embedding_neighbours", "transfer_labels/main"):
        assert (tmp_path / "benchmarks" / f"{rule}.tsv").exists()


def test_mean_embedding_of_two_splits_is_their_rows_in_order(rng):
    embs = list(fold_embeddings(rng, n_train=9, n_test=4, dim=5, folds=3).values())
    ids, both = mean_embedding(embs, "train", "test")
    parts = [mean_embedding(embs, split) for split in ("train", "test")]
    assert list(ids) == [*parts[0][0], *parts[1][0]]
    assert np.array_equal(both, np.concatenate([parts[0][1], parts[1][1]]))
    assert np.allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-6)  # K unit vectors side by side over sqrt(K)

"""The metric-learning embedding: its config against the schema, ArcFace, training, resuming, embedding rows."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from hpa.classes import HPA
from hpa.config.checks import schema_properties
from hpa.config.spec import EmbeddingConfig
from hpa.embedding.fit import fit_embedding
from hpa.embedding.job import embed_rows
from hpa.embedding.model import ArcMarginProduct, label_set_classes, load_embedder
from hpa.embedding.neighbours import nearest
from hpa.loop.augment import AugmentConfig

STATS = {"mean": [0.1] * 4, "std": [0.2] * 4}
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny CPU networks run fastest on one thread, and keep their speed on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    history = fit_embedding(TOY_CFG, cache, train, label_sets[train], STATS, vocabulary=HPA,
                            checkpoint_path=path, extra={"fold": 0, "image_size": 32})
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
    fit_embedding(TOY_CFG, cache, train, shuffled, STATS, vocabulary=HPA,
                  checkpoint_path=tmp_path / "shuffled.pt")
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
    import hpa.loop.fit as module

    cfg = dataclasses.replace(TOY_CFG, epochs=2, dim=8)
    cache, label_sets = toy_cache(n_per_set=6, size=16)
    rows = np.arange(len(cache))
    fit_embedding(cfg, cache, rows, label_sets, STATS, vocabulary=HPA,
                  checkpoint_path=tmp_path / "full/model.pt")
    real, calls = module.train_epoch, {"n": 0}

    def die_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "train_epoch", die_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        fit_embedding(cfg, cache, rows, label_sets, STATS, vocabulary=HPA,
                      checkpoint_path=tmp_path / "killed/model.pt")
    assert (tmp_path / "killed/last.pt").exists()
    monkeypatch.setattr(module, "train_epoch", real)
    history = fit_embedding(cfg, cache, rows, label_sets, STATS, vocabulary=HPA,
                            checkpoint_path=tmp_path / "killed/model.pt")
    assert list(history["epoch"]) == [1, 2] and not (tmp_path / "killed/last.pt").exists()
    full, resumed = (load_embedder(tmp_path / d / "model.pt", torch.device("cpu"))[0] for d in ("full", "killed"))
    assert np.allclose(embed_rows(full, cache, rows), embed_rows(resumed, cache, rows), atol=1e-5)


def test_too_few_repeated_label_sets_name_the_key(tmp_path):
    cache, _ = toy_cache(n_per_set=2, size=16)
    with pytest.raises(ValueError, match="embedding.min_class_size"):
        fit_embedding(TOY_CFG, cache, np.arange(6), ["0", "1", "2", "3", "4", "5"], STATS, vocabulary=HPA,
                      checkpoint_path=tmp_path / "model.pt")

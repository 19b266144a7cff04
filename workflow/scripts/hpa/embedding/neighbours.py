"""Nearest neighbours in the ArcFace embeddings: honest OOF and test searches, and duplicate pairs.

Embeddings are L2-normalised, so a matrix product gives cosines; it is taken
a block of query rows at a time, sized so that a 100k x 100k similarity
matrix never materialises.

- OOF: an image of fold k is searched among the other folds' training images
  with fold k's embedding, which never saw it; this is what the transfer
  threshold is fitted on (``hpa.postprocess.transfer``).
- Test: among all training rows (Kaggle and external), by the cosine averaged
  over the folds' embeddings (their normalised embeddings concatenated and
  divided by sqrt(K)).
- Duplicates: every pair of embedded images (train, external, test) above a
  cosine, beside the perceptual-hash clusters of ``clean_external``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from hpa.files import atomic_path, write_csv
from hpa.tables import read_manifest

log = logging.getLogger(__name__)

# Similarities computed at once (128 MB of float32).
MAX_BLOCK = 2**25


# A duplicate cosine so low that most pairs pass would fill the disk, not find duplicates.
MAX_PAIRS = 5_000_000


def write_embeddings(path, train_ids, train, test_ids, test) -> None:
    """One fold's embeddings: ``train_ids``, ``train``, ``test_ids``, ``test`` arrays in an .npz."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, train_ids=np.asarray(train_ids, dtype=str), train=np.asarray(train, dtype=np.float32),
                 test_ids=np.asarray(test_ids, dtype=str), test=np.asarray(test, dtype=np.float32))


def read_embeddings(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in ("train_ids", "train", "test_ids", "test")}
    return {"path": str(path), **arrays}


def nearest(queries: np.ndarray, database: np.ndarray, max_block: int = MAX_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Index in ``database`` and cosine of each query's nearest row, a block of queries at a time."""
    if len(database) == 0:
        raise ValueError("nearest-neighbour search among no training images; check the folds and the cache index")
    index = np.zeros(len(queries), dtype=np.int64)
    similarity = np.zeros(len(queries), dtype=np.float32)
    step = max(1, max_block // len(database))
    for start in range(0, len(queries), step):
        block = queries[start : start + step] @ database.T
        best = block.argmax(axis=1)
        index[start : start + step] = best
        similarity[start : start + step] = block[np.arange(len(best)), best]
    return index, similarity


def _dots(embeddings: np.ndarray, r: np.ndarray, c: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Cosine of each pair (r, c) of rows, a chunk of pairs at a time."""
    out = np.empty(len(r), dtype=np.float32)
    for start in range(0, len(r), chunk):
        a, b = embeddings[r[start : start + chunk]], embeddings[c[start : start + chunk]]
        out[start : start + chunk] = np.einsum("ij,ij->i", a, b)
    return out


def pairs_above(embeddings: np.ndarray, min_similarity: float, max_block: int = MAX_BLOCK,
                max_pairs: int = MAX_PAIRS, parts: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair i < j with cosine >= ``min_similarity``: (i, j, cosine).

    ``parts``: the rows are that many unit vectors side by side over sqrt(parts) (the folds'
    ``mean_embedding``), so a cosine is the mean of the parts' cosines. Each of those is at
    most 1, so a pair reaching s on the mean reaches parts * s - (parts - 1) on the first part
    alone: the search multiplies the first part only (parts times fewer operations) and takes
    the full cosine of the pairs that clear that bound. Exact, whatever the embeddings.
    """
    n, width = embeddings.shape
    bound = parts * min_similarity - (parts - 1)
    first = embeddings[:, : width // parts] if parts > 1 and bound > -1 else embeddings
    # The first part's columns hold its cosine over ``parts``; the slack absorbs float rounding.
    cut = min_similarity if first is embeddings else bound / parts - 1e-5
    found = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))]
    total, step = 0, max(1, max_block // max(n, 1))
    for start in range(0, n, step):
        block = first[start : start + step] @ first[start:].T  # columns j >= i only
        r, c = np.nonzero(block >= cut)
        upper = c > r
        r, c = start + r[upper], start + c[upper]
        if first is embeddings:
            similarity = block[r - start, c - start]
        else:
            similarity = _dots(embeddings, r, c)
            keep = similarity >= min_similarity
            r, c, similarity = r[keep], c[keep], similarity[keep]
        found.append((r, c, similarity))
        total += len(r)
        if total > max_pairs:
            raise ValueError(f"more than {max_pairs} image pairs have cosine >= {min_similarity}; "
                             f"raise embedding.duplicate_similarity")
    return tuple(np.concatenate(columns) for columns in zip(*found))


def mean_embedding(fold_embeddings: list[dict], *splits: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids and the folds' embeddings side by side / sqrt(K): dot products are cosines averaged over folds.

    Rows are the images of ``splits`` in order, written into one array (at 100k images it is
    over a GB, so no intermediate copy is made).
    """
    for split in splits:
        ids = fold_embeddings[0][f"{split}_ids"]
        for other in fold_embeddings[1:]:
            if not np.array_equal(other[f"{split}_ids"], ids):
                raise ValueError(f"{other['path']} lists other {split} images than {fold_embeddings[0]['path']}; "
                                 f"rerun embed for every fold (snakemake --forcerun embed)")
    first = fold_embeddings[0]
    rows, dim = sum(len(first[s]) for s in splits), first[splits[0]].shape[1]
    stacked = np.empty((rows, dim * len(fold_embeddings)), dtype=np.float32)
    for k, emb in enumerate(fold_embeddings):
        start = 0
        for split in splits:
            stacked[start : start + len(emb[split]), k * dim : (k + 1) * dim] = emb[split]
            start += len(emb[split])
    stacked /= np.float32(np.sqrt(len(fold_embeddings)))
    return np.concatenate([first[f"{s}_ids"] for s in splits]), stacked


def oof_neighbours(fold_embeddings: dict[int, dict], folds: pd.DataFrame) -> pd.DataFrame:
    """Each training image's nearest image of the other folds, in the embedding of its own fold."""
    tables = []
    for k, emb in fold_embeddings.items():
        ids = emb["train_ids"]
        fold = folds.set_index("Id")["fold"].reindex(ids)
        if fold.isna().any():
            raise ValueError(f"{emb['path']}: image {fold.index[fold.isna()][0]} is not in the folds table; "
                             f"rerun embed after make_folds (snakemake --forcerun embed)")
        query = fold.to_numpy() == k
        index, similarity = nearest(emb["train"][query], emb["train"][~query])
        tables.append(pd.DataFrame({"Id": ids[query], "split": "oof", "neighbour": ids[~query][index],
                                    "similarity": similarity}))
    return pd.concat(tables, ignore_index=True)


def test_neighbours(fold_embeddings: list[dict]) -> pd.DataFrame:
    """Each test image's nearest training image, by cosine averaged over the folds' embeddings."""
    train_ids, train = mean_embedding(fold_embeddings, "train")
    test_ids, test = mean_embedding(fold_embeddings, "test")
    index, similarity = nearest(test, train)
    return pd.DataFrame({"Id": test_ids, "split": "test", "neighbour": train_ids[index], "similarity": similarity})


def find_neighbours(fold_embeddings: dict[int, dict], folds: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``Id,split,neighbour,similarity,neighbour_target``, split ``oof`` (training images) or ``test``."""
    table = pd.concat([oof_neighbours(fold_embeddings, folds), test_neighbours(list(fold_embeddings.values()))],
                      ignore_index=True)
    table["neighbour_target"] = table["neighbour"].map(labels.set_index("Id")["Target"])
    return table.assign(similarity=table["similarity"].round(6))


def phash_clustered(id_a, id_b, phash: pd.DataFrame | None) -> pd.Series:
    """Whether the pHash stage put each pair in one cluster; <NA> where it did not run."""
    if phash is None:
        return pd.Series(pd.NA, index=range(len(id_a)), dtype="boolean")
    cluster = phash.set_index("Id")["cluster"]
    a, b = pd.Series(id_a).map(cluster), pd.Series(id_b).map(cluster)
    return (a.notna() & (a == b)).astype("boolean")


def duplicate_pairs(fold_embeddings: list[dict], manifest: pd.DataFrame, min_similarity: float,
                    phash: pd.DataFrame | None = None) -> pd.DataFrame:
    """Image pairs (train, external, test) with mean cosine >= ``min_similarity``, most similar first.

    ``same_labels`` compares the two label sets where both are labelled;
    ``phash_cluster`` says whether ``clean_external``'s duplicates table
    (``phash``) clustered the pair too.
    """
    ids, emb = mean_embedding(fold_embeddings, "train", "test")
    i, j, similarity = pairs_above(emb, min_similarity, parts=len(fold_embeddings))
    info = manifest.set_index("Id")[["split", "source", "Target"]].reindex(ids)
    a, b = info.iloc[i].reset_index(drop=True), info.iloc[j].reset_index(drop=True)
    labelled = a["split"].eq("train") & b["split"].eq("train")
    table = pd.DataFrame({
        "Id_a": ids[i], "Id_b": ids[j], "similarity": np.round(similarity, 6),
        "split_a": a["split"], "split_b": b["split"], "source_a": a["source"], "source_b": b["source"],
        "Target_a": a["Target"], "Target_b": b["Target"],
        "same_labels": (a["Target"] == b["Target"]).astype("boolean").where(labelled, pd.NA),
        "phash_cluster": phash_clustered(ids[i], ids[j], phash),
    })
    return table.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)


def phash_pairs_missed(table: pd.DataFrame, phash: pd.DataFrame, embedded) -> int:
    """Pairs of embedded images the pHash stage clustered but the embedding did not pass."""
    members = phash[phash["Id"].isin(set(embedded))]
    sizes = members.groupby("cluster").size()
    return int((sizes * (sizes - 1) // 2).sum() - table["phash_cluster"].sum())


def run_neighbours_job(*, embeddings, folds: list[int], folds_csv, manifest_csv, neighbours_csv) -> None:
    """The ``embedding_neighbours`` rule: OOF and test nearest neighbours of every image."""
    fold_embeddings = {k: read_embeddings(path) for k, path in zip(folds, embeddings)}
    table = find_neighbours(fold_embeddings, pd.read_csv(folds_csv, dtype={"Id": str}),
                            read_manifest(manifest_csv, split="train"))
    write_csv(table, neighbours_csv)
    for split, group in table.groupby("split"):
        log.info("%s: %d images, median nearest cosine %.3f", split, len(group), group["similarity"].median())


def run_duplicates_job(*, embeddings, manifest_csv, phash_csv, min_similarity: float, duplicates_csv) -> None:
    """The ``embedding_duplicates`` rule: the learned duplicate table beside the pHash clusters."""
    fold_embeddings = [read_embeddings(path) for path in embeddings]
    phash = pd.read_csv(phash_csv, dtype={"Id": str}, keep_default_na=False) if phash_csv else None
    table = duplicate_pairs(fold_embeddings, read_manifest(manifest_csv), min_similarity, phash)
    write_csv(table, duplicates_csv)
    kinds = (table["split_a"] + "-" + table["split_b"]).value_counts().to_dict()
    log.info("%d pairs with cosine >= %s: %s", len(table), min_similarity, kinds)
    if phash is None:
        log.info("no pHash clusters (external.use is off): phash_cluster left empty")
        return
    embedded = np.concatenate([fold_embeddings[0]["train_ids"], fold_embeddings[0]["test_ids"]])
    log.info("%d of them clustered by pHash too; %d pHash pairs below the cosine",
             int(table["phash_cluster"].sum()), phash_pairs_missed(table, phash, embedded))

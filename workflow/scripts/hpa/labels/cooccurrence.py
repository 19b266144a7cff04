"""Label co-occurrence: frequent itemsets, association rules, class groups, sampling weights.

Everything here reads labels only (``Id,Target`` tables), never images, so the
analysis runs before a single image is downloaded. Class sets are written as
ascending space-separated class numbers, as in Kaggle's ``Target`` column. The class
names (and so the number of classes) are the vocabulary's (``hpa.classes.Vocabulary``),
passed in as ``names``.
"""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pandas as pd
import yaml
from mlxtend.frequent_patterns import apriori, association_rules, fpgrowth
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform
from sklearn.cluster import SpectralClustering

from hpa.classes import join_names
from hpa.files import atomic_path
from hpa.labels.sampling import class_weights
from hpa.tables import InputError, format_target, labels_to_matrix, read_canonical_labels

log = logging.getLogger(__name__)

ALGORITHMS = {"apriori": apriori, "fpgrowth": fpgrowth}


ITEMSET_COLUMNS = ["itemset", "support", "count", "length", "names"]


RULE_COLUMNS = ["antecedent", "consequent", "support", "confidence", "lift", "count",
                "antecedent_names", "consequent_names"]


def read_label_sources(paths: dict[str, str], n_classes: int) -> pd.DataFrame:
    """``Id,Target,source`` for every row of every labels CSV, as listed (no image is checked).

    Each is canonical: the training labels as ingest's ``labels`` rule wrote them, or the
    HPAv18 list (the atlas's 28 classes, used only with that vocabulary)."""
    tables = []
    for source, path in paths.items():
        table = read_canonical_labels(path, n_classes)[["Id", "Target"]]
        if table.empty:
            raise InputError(f"{path}: no label rows; the {source} labels file must list Id,Target rows")
        tables.append(table.assign(source=source))
        log.info("%s: %d label sets from %s", source, len(table), path)
    return pd.concat(tables, ignore_index=True)


def label_matrix(labels: pd.DataFrame, n_classes: int) -> np.ndarray:
    """One-hot (images, ``n_classes``) bool matrix of a labels table."""
    return labels_to_matrix(labels["Target"], n_classes).astype(bool)


def frequent_itemsets(y: np.ndarray, *, min_support: float, max_len: int, algorithm: str) -> pd.DataFrame:
    """mlxtend's frequent itemsets (``support``, ``itemsets`` of class numbers) of a one-hot matrix."""
    if algorithm not in ALGORITHMS:
        raise InputError(f"analysis.algorithm {algorithm!r} is unknown; use one of {sorted(ALGORITHMS)}")
    y = np.asarray(y, dtype=bool)
    onehot = pd.DataFrame(y, columns=range(y.shape[1]))
    return ALGORITHMS[algorithm](onehot, min_support=min_support, use_colnames=True, max_len=max_len)


def class_sets(column) -> list[tuple[int, ...]]:
    """mlxtend's frozensets of class numbers as ascending tuples."""
    return [tuple(sorted(int(k) for k in s)) for s in column]


def itemsets_table(freq: pd.DataFrame, n: int, names) -> pd.DataFrame:
    """``itemset,support,count,length,names``: by length, then most frequent first."""
    items = class_sets(freq["itemsets"])
    support = freq["support"].to_numpy(dtype=float)
    table = pd.DataFrame({
        "itemset": [format_target(s) for s in items],
        "support": support.round(6),
        "count": np.rint(support * n).astype(int),
        "length": [len(s) for s in items],
        "names": [join_names(s, names) for s in items],
    }, columns=ITEMSET_COLUMNS)
    order = sorted(range(len(items)), key=lambda i: (len(items[i]), -table["count"][i], items[i]))
    return table.iloc[order].reset_index(drop=True)


def rules_table(freq: pd.DataFrame, n: int, min_confidence: float, names) -> pd.DataFrame:
    """Association rules with confidence >= ``min_confidence``, strongest lift first."""
    if not (freq["itemsets"].map(len) > 1).any():  # mlxtend refuses an itemset table without pairs
        return pd.DataFrame(columns=RULE_COLUMNS)
    rules = association_rules(freq, num_itemsets=n, metric="confidence", min_threshold=min_confidence,
                              return_metrics=["support", "confidence", "lift"])
    a, c = class_sets(rules["antecedents"]), class_sets(rules["consequents"])
    table = pd.DataFrame({
        "antecedent": [format_target(s) for s in a],
        "consequent": [format_target(s) for s in c],
        "support": rules["support"].to_numpy(dtype=float).round(6),
        "confidence": rules["confidence"].to_numpy(dtype=float).round(6),
        "lift": rules["lift"].to_numpy(dtype=float).round(6),
        "count": np.rint(rules["support"].to_numpy(dtype=float) * n).astype(int),
        "antecedent_names": [join_names(s, names) for s in a],
        "consequent_names": [join_names(s, names) for s in c],
    })
    # Sorted on the rounded values, so that float noise cannot reorder equal lifts (A -> C, C -> A).
    order = sorted(range(len(a)), key=lambda i: (-table["lift"][i], -table["confidence"][i], a[i], c[i]))
    return table.iloc[order].reset_index(drop=True)


def cooccurrence_counts(y: np.ndarray) -> np.ndarray:
    """(classes, classes) images holding both i and j; the diagonal is each class's count."""
    # float64 goes through BLAS (integer matmul does not: 0.5 s for 106k rows) and is exact below 2**53.
    y = np.asarray(y, dtype=np.float64)
    return np.rint(y.T @ y).astype(np.int64)


def conditional_probability(counts: np.ndarray) -> np.ndarray:
    """P(j | i) = counts[i, j] / counts[i, i]; NaN rows for classes absent from the labels."""
    diag = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(diag[:, None] > 0, counts / diag[:, None], np.nan)


def matrix_table(matrix: np.ndarray, names) -> pd.DataFrame:
    """A square class-by-class matrix as ``class,name,0,...,n-1``."""
    if np.shape(matrix) != (len(names), len(names)):
        raise ValueError(f"a {np.shape(matrix)} matrix for {len(names)} class names; they must agree")
    table = pd.DataFrame(matrix, columns=[str(k) for k in range(len(names))])
    table.insert(0, "name", list(names))
    table.insert(0, "class", range(len(names)))
    return table


def matrix_values(table: pd.DataFrame) -> np.ndarray:
    """The (n, n) values of a :func:`matrix_table` (n: its rows)."""
    columns = [str(k) for k in range(len(table))]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"a class matrix of {len(table)} rows lacks column(s) {missing[:5]}; rerun count_labels")
    return table[columns].to_numpy()


def read_matrix(path) -> np.ndarray:
    return matrix_values(pd.read_csv(path))


def subsets(labels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All labels together ("all"), then each source's own."""
    return {"all": labels, **{s: labels[labels["source"] == s] for s in labels["source"].unique()}}


def table_key(subset: str, name: str) -> str:
    """The analysis rules' output key of table ``name`` of a subset (common.smk's analysis_tables)."""
    return name if subset == "all" else f"{name}_{subset}"


def cooccurrence_tables(labels: pd.DataFrame, names) -> dict[str, pd.DataFrame]:
    """Co-occurrence counts and P(j | i) of one set of labels, over the classes ``names``."""
    counts = cooccurrence_counts(label_matrix(labels, len(names)))
    return {
        "cooccurrence_counts": matrix_table(counts, names),
        "cooccurrence_conditional": matrix_table(conditional_probability(counts).round(6), names),
    }


def mining_tables(labels: pd.DataFrame, names, *, algorithm: str, min_support: float, max_len: int,
                  min_confidence: float) -> dict[str, pd.DataFrame]:
    """Frequent itemsets and association rules of one set of labels, over the classes ``names``."""
    y = label_matrix(labels, len(names))
    freq = frequent_itemsets(y, min_support=min_support, max_len=max_len, algorithm=algorithm)
    itemsets, rules = itemsets_table(freq, len(y), names), rules_table(freq, len(y), min_confidence, names)
    log.info("%s, %d label sets: %d frequent itemsets (%s, support >= %g, up to %d classes), %d rules",
             " + ".join(labels["source"].unique()), len(y), len(itemsets),
             algorithm, min_support, max_len, len(rules))
    return {"itemsets": itemsets, "rules": rules}


def class_counts_table(labels: pd.DataFrame, sources: list[str], names) -> pd.DataFrame:
    """``class,name``, one count column per source, then ``all``: images per class of ``names``."""
    n = len(names)
    table = pd.DataFrame({"class": range(n), "name": list(names)})
    for source in sources:
        table[source] = label_matrix(labels[labels["source"] == source], n).sum(axis=0)
    table["all"] = label_matrix(labels, n).sum(axis=0)
    return table


def ochiai_similarity(counts: np.ndarray) -> np.ndarray:
    """counts[i, j] / sqrt(counts[i, i] counts[j, j]), zero diagonal: the cosine of two classes' image sets.

    Unlike a raw count it does not grow with the classes' sizes, so two rare classes
    that always come together (Endosomes, Lysosomes) are as similar as two common ones.
    """
    diag = np.diag(counts).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = np.nan_to_num(counts / np.sqrt(np.outer(diag, diag)))
    np.fill_diagonal(sim, 0.0)
    return sim


def spectral_labels(sim: np.ndarray, k: int) -> np.ndarray:
    # The normalised cut penalises small groups, so a rare class joins the classes it
    # co-occurs with instead of being split off alone, as average linkage does.
    n_parts, _ = connected_components(sim > 0, directed=False)
    if n_parts > 1:
        log.info("the class co-occurrence graph has %d disconnected parts", n_parts)
    model = SpectralClustering(n_clusters=k, affinity="precomputed", assign_labels="cluster_qr", random_state=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Graph is not fully connected")  # logged above
        return model.fit(sim).labels_


def hierarchical_labels(sim: np.ndarray, k: int) -> np.ndarray:
    dist = 1.0 - sim
    np.fill_diagonal(dist, 0.0)
    return cut_tree(linkage(squareform(dist, checks=False), method="average"), n_clusters=k).ravel()


GROUPINGS = {"spectral": spectral_labels, "hierarchical": hierarchical_labels}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def class_groups(counts: np.ndarray, n_groups: int, method: str, names) -> dict:
    """Partition the classes (``names``, as ``counts``' rows) into at most ``n_groups`` groups that co-occur.

    Classes that never share an image with another class (absent, or always alone)
    carry no co-occurrence signal; they join the group of the most frequent class.
    Groups are ordered by their lowest class and named after their most frequent class.
    """
    if method not in GROUPINGS:
        raise InputError(f"analysis.group_method {method!r} is unknown; use one of {sorted(GROUPINGS)}")
    n = len(names)
    if np.shape(counts) != (n, n):
        raise InputError(f"co-occurrence counts of shape {np.shape(counts)} for {n} classes; rerun count_labels")
    if n_groups < 1:  # more groups than classes: capped below (at most one class per group), logged
        raise InputError(f"analysis.n_groups {n_groups}: give at least 1")
    sim = ochiai_similarity(counts)
    size = np.diag(counts)
    linked = np.flatnonzero(sim.sum(axis=1) > 0)
    assignment = np.zeros(n, dtype=int)
    if len(linked):
        k = min(n_groups, len(linked))
        assignment[:] = -1
        if k == len(linked):
            assignment[linked] = np.arange(k)
        else:
            assignment[linked] = GROUPINGS[method](sim[np.ix_(linked, linked)], k) if k > 1 else 0
        anchor = linked[np.argmax(size[linked])]
        assignment[assignment < 0] = assignment[anchor]
    members = sorted(sorted(np.flatnonzero(assignment == g).tolist()) for g in np.unique(assignment))
    if len(members) < n_groups:
        log.warning("analysis.n_groups=%d but the labels support only %d groups", n_groups, len(members))
    groups = []
    for classes in members:
        top = max(classes, key=lambda k: (size[k], -k))
        groups.append({"name": slug(names[top]), "classes": classes, "names": [names[k] for k in classes]})
    unlinked = sorted(set(range(n)) - set(linked.tolist()))
    for group in groups:
        log.info("group %s: %s", group["name"], ", ".join(group["names"]))
    return {"method": method, "similarity": "ochiai", "n_groups": len(groups), "unlinked": unlinked,
            "groups": groups}


def write_yaml(obj, path) -> None:
    with atomic_path(path) as tmp:
        # Flow style for the lists: one line of class numbers per group.
        tmp.write_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=None,
                                      width=100))


def sampling_weights(class_count, n: int, names, *, power: float, cap: float) -> pd.DataFrame:
    """``class,name,count,frequency,weight`` with weight_c = min(cap, (f_max / f_c) ** power).

    f_c is the fraction of label sets holding class c, f_max that of the most frequent
    class, so the most frequent class weighs 1. power 0 gives every class 1, power 1
    evens the class frequencies out (up to the cap). An absent class gets the cap.
    An image then weighs the largest weight among its classes (``hpa.labels.sampling.image_weights``),
    so it is drawn as often as its rarest class asks.
    """
    count = np.asarray(class_count, dtype=float)
    if len(count) != len(names):
        raise ValueError(f"{len(count)} class counts for {len(names)} class names; they must agree")
    return pd.DataFrame({
        "class": range(len(names)),
        "name": list(names),
        "count": count.astype(int),
        "frequency": (count / n).round(8),
        "weight": class_weights(count, power, cap).round(6),
    })

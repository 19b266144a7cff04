"""Label co-occurrence: itemsets and rules against brute-force counts, groups, weights, the stage."""

import csv
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, SHARED_HPA, job_counts, snakemake

from hpa.classes import CLASS_NAMES, NUM_CLASSES
from hpa.labels import cooccurrence as co
from hpa.tables import format_target


def labels_table(sets, source="kaggle"):
    return pd.DataFrame({"Id": [f"i{i}" for i in range(len(sets))],
                         "Target": [format_target(s) for s in sets], "source": source})


def random_label_sets(n, seed):
    """Skewed class frequencies with planted pairs, like the real labels."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, NUM_CLASSES + 1)
    sets = []
    for _ in range(n):
        s = set(rng.choice(NUM_CLASSES, size=rng.choice([1, 2, 3, 4], p=[0.45, 0.35, 0.15, 0.05]),
                           replace=False, p=p / p.sum()).tolist())
        if 9 in s or rng.random() < 0.05:
            s |= {9, 10}
        sets.append(s)
    return sets


def brute_force_counts(targets, max_len):
    """Images holding each class set, from every subset of every label set (no mlxtend, no matrices)."""
    counts = Counter()
    for target in targets:
        classes = sorted(int(k) for k in target.split())
        for r in range(1, max_len + 1):
            counts.update(combinations(classes, r))
    return counts


def parse(itemset):
    return tuple(int(k) for k in itemset.split())


@pytest.mark.parametrize("algorithm", ["apriori", "fpgrowth"])
def test_every_itemset_count_matches_a_brute_force_count(algorithm):
    labels = labels_table(random_label_sets(600, seed=1))
    n, min_support, max_len = len(labels), 0.01, 3
    table = co.mining_tables(labels, CLASS_NAMES, algorithm=algorithm, min_support=min_support, max_len=max_len,
                            min_confidence=0.3)["itemsets"]
    brute = brute_force_counts(labels["Target"], max_len)
    expected = {s: c for s, c in brute.items() if c / n >= min_support}
    assert {parse(s): c for s, c in zip(table["itemset"], table["count"])} == expected
    assert len(expected) > 40 and max(map(len, expected)) == 3
    for row in table.itertuples():
        assert list(parse(row.itemset)) == sorted(parse(row.itemset)) and row.length == len(parse(row.itemset))
        assert row.support == pytest.approx(row.count / n, abs=1e-6)
        assert row.names == "; ".join(CLASS_NAMES[k] for k in parse(row.itemset))
    keys = list(zip(table["length"], -table["count"]))
    assert keys == sorted(keys)


def test_rules_match_brute_force_confidence_and_lift():
    labels = labels_table(random_label_sets(800, seed=2))
    n, min_support, min_confidence = len(labels), 0.01, 0.2
    rules = co.mining_tables(labels, CLASS_NAMES, algorithm="apriori", min_support=min_support, max_len=3,
                            min_confidence=min_confidence)["rules"]
    brute = brute_force_counts(labels["Target"], 3)
    frequent = {s: c for s, c in brute.items() if c / n >= min_support}
    expected = {}
    for itemset, count in frequent.items():
        for r in range(1, len(itemset)):
            for a in combinations(itemset, r):
                c = tuple(k for k in itemset if k not in a)
                confidence = count / brute[a]
                if confidence >= min_confidence:
                    expected[a, c] = (count / n, confidence, confidence / (brute[c] / n), count)
    got = {(parse(r.antecedent), parse(r.consequent)): (r.support, r.confidence, r.lift, r.count)
           for r in rules.itertuples()}
    assert got.keys() == expected.keys() and len(got) >= 5
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-5), key
    assert got[(9,), (10,)][1] == 1.0  # planted: Endosomes always come with Lysosomes
    assert list(rules["lift"]) == sorted(rules["lift"], reverse=True)


def test_cooccurrence_matrices_match_pair_counts():
    sets = random_label_sets(300, seed=3)
    sets = [s - {27} for s in sets if s - {27}]  # class 27 absent
    counts = co.cooccurrence_counts(co.label_matrix(labels_table(sets), NUM_CLASSES))
    brute = brute_force_counts([format_target(s) for s in sets], 2)
    for i in range(NUM_CLASSES):
        assert counts[i, i] == brute[(i,)]
        for j in range(i + 1, NUM_CLASSES):
            assert counts[i, j] == counts[j, i] == brute[(i, j)]
    cond = co.conditional_probability(counts)
    assert cond[9, 10] == pytest.approx(brute[(9, 10)] / brute[(9,)])
    assert np.isnan(cond[27]).all() and cond[0, 27] == 0


def test_tiny_labels_give_empty_tables_with_their_headers(tmp_path):
    labels = labels_table([{0}, {1}, {2, 3}])
    tables = co.mining_tables(labels, CLASS_NAMES, algorithm="apriori", min_support=0.9, max_len=4, min_confidence=0.5)
    assert tables["itemsets"].empty and tables["rules"].empty
    for name in ("itemsets", "rules"):
        tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
    assert (tmp_path / "itemsets.csv").read_text().strip() == "itemset,support,count,length,names"
    assert pd.read_csv(tmp_path / "rules.csv").columns.tolist()[:5] == [
        "antecedent", "consequent", "support", "confidence", "lift"]
    # singletons frequent, no pair: still no rule and no error
    tables = co.mining_tables(labels_table([{0}, {1}, {2}, {3}]), CLASS_NAMES, algorithm="fpgrowth", min_support=0.25,
                             max_len=4, min_confidence=0.5)
    assert tables["itemsets"]["itemset"].tolist() == ["0", "1", "2", "3"] and tables["rules"].empty


def planted_blocks(n, seed):
    """Label sets drawn inside one of four blocks of seven classes."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        block = rng.integers(4)
        sets.append(set((7 * block + rng.choice(7, size=rng.integers(1, 4), replace=False)).tolist()))
    return sets


@pytest.mark.parametrize("method", ["spectral", "hierarchical"])
def test_class_groups_recover_planted_blocks(method):
    counts = co.cooccurrence_counts(co.label_matrix(labels_table(planted_blocks(2000, seed=4)), NUM_CLASSES))
    groups = co.class_groups(counts, 4, method, CLASS_NAMES)
    assert [g["classes"] for g in groups["groups"]] == [list(range(7 * b, 7 * b + 7)) for b in range(4)]
    assert groups == co.class_groups(counts, 4, method, CLASS_NAMES)


def test_class_groups_place_lonely_and_absent_classes_once():
    sets = [s for s in planted_blocks(500, seed=5) if not s & {26, 27}] + [{26}] * 3  # 27 absent, 26 alone
    counts = co.cooccurrence_counts(co.label_matrix(labels_table(sets), NUM_CLASSES))
    groups = co.class_groups(counts, 5, "spectral", CLASS_NAMES)
    members = [k for g in groups["groups"] for k in g["classes"]]
    assert sorted(members) == list(range(NUM_CLASSES))
    assert groups["unlinked"] == [26, 27] and groups["n_groups"] == len(groups["groups"]) == 5
    most_frequent = int(np.argmax(np.diag(counts)))
    home = next(g for g in groups["groups"] if most_frequent in g["classes"])
    assert {26, 27} <= set(home["classes"]) and home["name"] == co.slug(CLASS_NAMES[most_frequent])
    # more groups asked than the labels can hold
    few = co.cooccurrence_counts(co.label_matrix(labels_table([{0, 1}, {1, 2}, {5}]), NUM_CLASSES))
    few_groups = co.class_groups(few, 6, "spectral", CLASS_NAMES)
    assert [g["classes"] for g in few_groups["groups"]] == [[0], [1, *range(3, NUM_CLASSES)], [2]]


def test_sampling_weights_follow_the_documented_formula():
    counts = np.zeros(NUM_CLASSES, dtype=int)
    counts[:4] = [400, 100, 25, 1]
    table = co.sampling_weights(counts, 500, CLASS_NAMES, power=0.5, cap=10.0)
    assert table.columns.tolist() == ["class", "name", "count", "frequency", "weight"]
    assert table["weight"][:4].tolist() == [1.0, 2.0, 4.0, 10.0]  # sqrt(400/1) = 20 capped at 10
    assert (table["weight"][4:] == 10.0).all()  # absent classes get the cap
    assert table["frequency"][1] == 0.2
    assert (co.sampling_weights(counts, 500, CLASS_NAMES, power=0.0, cap=10.0)["weight"] == 1.0).all()


def independent_counts(path):
    """Class and pair counts with the csv module alone."""
    singles, pairs, rows = Counter(), Counter(), 0
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            classes = sorted(int(k) for k in row["Target"].split())
            singles.update(classes)
            pairs.update(combinations(classes, 2))
            rows += 1
    return rows, singles, pairs


# Verified counts of /work/shared/data/hpa/SOURCES.md: rows, then classes 0, 25, 27, 15.
REAL = {"train.csv": (31072, 12885, 8228, 11, 21), "HPAv18RBGY_wodpl.csv": (74606, 28073, 29138, 116, 42)}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_labels_class_counts_and_top_pairs(name):
    path = SHARED_HPA / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    labels = co.read_label_sources({"kaggle": path}, 28)
    itemsets = co.mining_tables(labels, CLASS_NAMES, algorithm="apriori", min_support=0.001, max_len=2,
                                min_confidence=0.3)["itemsets"]
    rows, singles, pairs = independent_counts(path)
    counts = co.matrix_values(co.cooccurrence_tables(labels, CLASS_NAMES)["cooccurrence_counts"])
    assert len(labels) == rows == REAL[name][0]
    assert [counts[k, k] for k in (0, 25, 27, 15)] == list(REAL[name][1:])
    assert [counts[k, k] for k in range(NUM_CLASSES)] == [singles[k] for k in range(NUM_CLASSES)]
    top = itemsets[itemsets["length"] == 2].head(10)
    assert [(parse(s), c) for s, c in zip(top["itemset"], top["count"])] == pairs.most_common(10)
    if name == "train.csv":
        assert pairs[(0, 25)] == 3631  # Nucleoplasm with Cytosol, as the issue states


ANALYSIS_RULES = ("count_labels", "mine_labels", "class_groups", "sampling_weights", "plot_labels")
TARGETS = ["results/analysis/" + name for name in (
    "itemsets.csv", "rules.csv", "class_groups.yaml", "sampling_weights.csv",
    "cooccurrence_heatmap.png", "class_frequency.png")]


def write_labels(path, sets, prefix):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Id,Target\n" + "".join(f"{prefix}{i},{' '.join(map(str, s))}\n" for i, s in enumerate(sets)))


def listed_targets(workdir):
    """Target column of every labels CSV the run's config names: the source's train.csv, the external list."""
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    source_dir = config.get(config["source"], {}).get("dir", f"resources/{config['source']}")
    paths = {config["source"]: workdir / source_dir / "train.csv"}
    if config.get("external", {}).get("use"):
        paths["external"] = workdir / config["external"]["list"]
    return {source: pd.read_csv(path, dtype=str)["Target"].tolist() for source, path in paths.items()}


def frequent(targets, min_support):
    return {s: c for s, c in brute_force_counts(targets, 4).items() if c / len(targets) >= min_support}


def read_itemsets(path):
    table = pd.read_csv(path, dtype={"itemset": str})
    return {parse(s): c for s, c in zip(table["itemset"], table["count"])}


@pytest.fixture(scope="module")
def labels_only_run(tmp_path_factory):
    """config/hpa.yaml with only label CSVs in place: Kaggle's train.csv and the external list. No image."""
    workdir = tmp_path_factory.mktemp("labels_only")
    config = yaml.safe_load((REPO / "config/hpa.yaml").read_text())
    write_labels(workdir / "resources/kaggle/train.csv", [sorted(s) for s in random_label_sets(400, seed=6)], "k")
    assert config["external"]["use"]  # the external list is counted as a source of its own
    write_labels(workdir / config["external"]["list"], [[9, 10], [0, 25], [27]] * 20, "e")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, *TARGETS)
    return workdir


@pytest.mark.workflow
def test_stage_runs_from_the_labels_alone(labels_only_run):
    root = labels_only_run / "results/analysis"
    assert not (labels_only_run / "results/data/manifest.csv").exists()  # canonical labels, no image read
    listed = listed_targets(labels_only_run)
    every = [t for targets in listed.values() for t in targets]
    assert read_itemsets(root / "itemsets.csv") == frequent(every, 0.001)
    assert read_itemsets(root / "sources/kaggle/itemsets.csv") == frequent(listed["kaggle"], 0.001)
    rules = pd.read_csv(root / "rules.csv")
    assert rules.columns.tolist()[:5] == ["antecedent", "consequent", "support", "confidence", "lift"]
    groups = yaml.safe_load((root / "class_groups.yaml").read_text())
    assert sorted(k for g in groups["groups"] for k in g["classes"]) == list(range(NUM_CLASSES))
    assert groups["n_groups"] == 6 and groups["method"] == "spectral"
    weights = pd.read_csv(root / "sampling_weights.csv")
    singles = brute_force_counts(every, 1)
    assert weights["count"].tolist() == [singles[(k,)] for k in range(NUM_CLASSES)]
    assert weights["weight"].min() == 1.0 and weights["weight"].max() <= 20.0
    for png in ("cooccurrence_heatmap.png", "class_frequency.png"):
        assert (root / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for rule in ANALYSIS_RULES:
        assert (labels_only_run / f"logs/{rule}.log").exists()
        assert (labels_only_run / f"benchmarks/{rule}.tsv").exists()


@pytest.mark.workflow
@pytest.mark.parametrize("key, value, rerun", [("min_support", 0.002, "mine_labels"),
                                              ("weight_cap", 10.0, "sampling_weights"),
                                              ("n_groups", 5, "class_groups")])
def test_a_changed_setting_reruns_only_its_rule(labels_only_run, key, value, rerun):
    """Mining settings must not rewrite the sampling weights (which would retrain oversampling models)."""
    config = yaml.safe_load((labels_only_run / "config.yaml").read_text())
    config["analysis"][key] = value
    (labels_only_run / "changed.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(labels_only_run, "-n", *TARGETS, configfile="changed.yaml").stdout
    expected = {rerun: 1, "plot_labels": 1} if rerun == "class_groups" else {rerun: 1}
    assert job_counts(out) == expected


@pytest.mark.workflow
def test_stage_adds_the_external_list_as_listed(labels_only_run):
    root = labels_only_run / "results/analysis"
    counts = pd.read_csv(root / "class_counts.csv")
    assert counts.columns.tolist() == ["class", "name", "kaggle", "external", "all"]
    assert counts["external"][27] == 20 and (counts["all"] == counts["kaggle"] + counts["external"]).all()
    assert read_itemsets(root / "sources/external/itemsets.csv")[(9, 10)] == 20
    kaggle = read_itemsets(root / "sources/kaggle/itemsets.csv")
    assert read_itemsets(root / "itemsets.csv")[(9, 10)] == kaggle[(9, 10)] + 20


@pytest.mark.workflow
def test_demo_run_writes_the_analysis(demo_run):
    """The default target includes the analysis; the tiny demo (36 training label sets) copes."""
    root = demo_run / "results/analysis"
    every = [t for targets in listed_targets(demo_run).values() for t in targets]
    analysis = yaml.safe_load((demo_run / "config.yaml").read_text()).get("analysis", {})
    assert read_itemsets(root / "itemsets.csv") == frequent(every, analysis.get("min_support", 0.01))
    rules = pd.read_csv(root / "rules.csv", dtype={"antecedent": str, "consequent": str})
    assert (rules["confidence"] >= 0.3).all() and list(rules["lift"]) == sorted(rules["lift"], reverse=True)
    groups = yaml.safe_load((root / "class_groups.yaml").read_text())
    assert sorted(k for g in groups["groups"] for k in g["classes"]) == list(range(NUM_CLASSES))
    singles = brute_force_counts(every, 1)
    weights = pd.read_csv(root / "sampling_weights.csv")
    assert weights["count"].tolist() == [singles[(k,)] for k in range(NUM_CLASSES)]
    for png in ("cooccurrence_heatmap.png", "class_frequency.png"):
        assert (root / png).stat().st_size > 10_000

"""What the scores count (issue 29): a listed class with no training image is named and scored both
ways; a test row ingest rejected is in no score."""

import json

import numpy as np
import pandas as pd
import pytest

from hpa.classes import Vocabulary
from hpa.data.ingest import warn_empty_classes
from hpa.data.label_files import kept_test_labels
from hpa.postprocess.front_page import empty_classes_note
from hpa.postprocess.submission import fit_thresholds
from hpa.postprocess.summary import summary
from hpa.tables import classes_without_images

CLASSES = ("nucleus", "Golgi", "actin", "cilia")  # cilia: in the list, no image


@pytest.fixture
def oof_without_cilia():
    rng = np.random.default_rng(0)
    n = 80
    y = np.zeros((n, 4), dtype=bool)
    y[np.arange(n), rng.integers(0, 3, n)] = True  # never class 3
    probs = np.clip(0.6 * y + rng.uniform(0, 0.5, y.shape), 0, 1)
    ids = [f"i{k}" for k in range(n)]
    oof = pd.DataFrame({"Id": ids, **{f"p{k}": probs[:, k] for k in range(4)}})
    labels = pd.DataFrame({"Id": ids, "Target": [" ".join(map(str, np.flatnonzero(r))) for r in y]})
    folds = pd.DataFrame({"Id": ids, "fold": np.arange(n) % 2})
    return oof, labels, folds, y


def test_classes_without_images_are_named():
    assert classes_without_images(["0", "1 2", ""], CLASSES) == ["cilia"]
    assert classes_without_images(["0 3", "1 2"], CLASSES) == []


def test_ingest_names_a_class_without_training_images_on_the_terminal(capsys):
    manifest = pd.DataFrame({"split": ["train", "train", "test"], "Target": ["0", "1 2", ""]})
    vocab = Vocabulary(CLASSES, ("dapi",), {"red": "dapi", "green": "dapi", "blue": "dapi"}, ";")
    assert warn_empty_classes(manifest, vocab) == ["cilia"]
    err = capsys.readouterr().err
    assert "1 of 4 classes have no training image: cilia" in err and "labels.names" in err


def test_the_scores_give_the_macro_f1_over_the_classes_with_images_beside_the_full_list(oof_without_cilia):
    oof, labels, folds, _ = oof_without_cilia
    record, _, _, _ = fit_thresholds(oof, labels, folds, "per_class", classes=CLASSES)
    assert record["classes_without_training_images"] == ["cilia"]
    with_images = record["honest_classes_with_images"]
    assert with_images["n_classes"] == 3 and with_images["of"] == 4
    # The full list averages cilia's 0 in: the figure over the three classes is that times 4/3.
    assert with_images["macro_f1"] == pytest.approx(record["honest_macro_f1"] * 4 / 3, abs=1e-5)
    low, high = with_images["interval"]
    assert low <= with_images["macro_f1"] <= high


def test_every_class_with_images_adds_nothing(oof_without_cilia):
    oof, labels, folds, _ = oof_without_cilia
    three = oof.drop(columns="p3")
    record, _, _, _ = fit_thresholds(three, labels, folds, "per_class", classes=CLASSES[:3])
    assert record["classes_without_training_images"] == [] and "honest_classes_with_images" not in record


def test_the_report_and_the_summary_say_how_the_empty_class_is_counted(tmp_path):
    comparison = pd.DataFrame({"ensemble": ["lab"], "classes_without_images": ["cilia"],
                               "honest_classes_with_images": [0.432], "test_classes_with_images": [0.5]})
    note = empty_classes_note(comparison)
    assert "Classes with no training image: cilia" in note and "lab: honest 0.432, test 0.500" in note
    assert empty_classes_note(comparison.assign(classes_without_images=[""])) == ""
    (tmp_path / "results/data").mkdir(parents=True)
    (tmp_path / "results/thresholds").mkdir(parents=True)
    (tmp_path / "results/data/vocabulary.json").write_text(json.dumps({"classes": list(CLASSES)}))
    pd.DataFrame({"Id": ["a", "b"], "split": ["train", "train"], "source": "samples", "Target": ["0", "1 2"]}
                 ).to_csv(tmp_path / "results/data/manifest.csv", index=False)
    text = summary(tmp_path, ["lab"])
    assert "Classes with no training image: cilia (1 of 4). Each macro F1 above averages all 4 classes" in text
    (tmp_path / "results/thresholds/lab.json").write_text(json.dumps({
        "honest_macro_f1": 0.393, "honest_macro_f1_interval": [0.35, 0.43], "no_skill_macro_f1": 0.2,
        "honest_classes_with_images": {"macro_f1": 0.524, "interval": [0.47, 0.57], "no_skill": 0.27}}))
    text = summary(tmp_path, ["lab"])
    assert "over the 3 classes with images:\n  lab  honest 0.524 [0.470, 0.570]" in text


def test_a_rejected_test_row_is_not_scored(caplog):
    truth = pd.DataFrame({"Id": ["t1", "t2", "t3"], "Target": ["0", "1", "2"]})
    kept = kept_test_labels(truth, ["t1", "t3"])
    assert list(kept["Id"]) == ["t1", "t3"]
    assert "test image t2 is not scored" in caplog.text

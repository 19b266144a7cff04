"""Every column and key of the outputs a user reads is a term of the README's glossary."""

import json
import re

import pandas as pd
import pytest
from conftest import REPO

# The tables and records a user opens (README "What you get and where"), in demo_run's names.
TABLES = ["submission/main.csv", "evaluation/comparison.csv", "metrics/main/threshold_methods.csv",
          "metrics/main/per_class.csv", "evaluation/main_methods.csv", "ensembles/main/oof.csv",
          "ensembles/main/test.csv", "data/manifest.csv", "data/rejected.csv", "splits/folds.csv",
          "models/tiny/fold0/history.csv", "ensembles/main/oof_predictions.csv",
          "ensembles/main/test_predictions.csv", "data/classes.csv", "data/leaks.csv", "data/duplicates.csv",
          "data/clipped/train.csv", "cells/cells.csv", "cells/images.csv", "cells/main/cell_scores.csv",
          "cells/main/submission_2021.csv", "cells/main/cell_evaluation.csv"]
RECORDS = ["thresholds/main.json", "evaluation/main.json", "cells/segmentation.json", "cells/main/cell_evaluation.json"]


def glossary() -> str:
    readme = (REPO / "README.md").read_text()
    return readme.split("\n## Glossary", 1)[1].split("\n## ", 1)[0]


def glossed(name: str, text: str) -> bool:
    """A name is glossed as itself in backticks, or by a pattern: `p0` … `p27`, `*_low`, `test_*`."""
    numbered = re.fullmatch(r"(\w*?)\d+", name)
    if f"`{name}`" in text or (numbered and f"`{numbered.group(1)}0` … `{numbered.group(1)}27`" in text):
        return True
    return any(re.fullmatch(re.escape(p).replace(r"\*", r"\w+"), name)
               for p in re.findall(r"`(\w*\*\w*)`", text))


def output_names(root) -> set[str]:
    names = set()
    for table in TABLES:
        names |= set(pd.read_csv(root / "results" / table, nrows=0).columns)
    for record in RECORDS:
        names |= set(json.loads((root / "results" / record).read_text()))
    return names


@pytest.mark.workflow
def test_every_output_name_is_in_the_glossary(demo_run):
    text = glossary()
    missing = sorted(n for n in output_names(demo_run) if not glossed(n, text))
    assert not missing, f"README.md's glossary lacks {missing}"


def test_glossed_matches_patterns_and_names_only():
    text = "`p0` … `p27`, `*_low`, `honest_macro_f1`"
    assert glossed("p13", text) and glossed("test_low", text) and glossed("honest_macro_f1", text)
    assert not glossed("honest", text) and not glossed("lowest", text) and not glossed("f1_3", text)

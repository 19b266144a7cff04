"""The report a person opens: its front page's scores, checked as reStructuredText and, after a
workflow run, in a real browser (headless Chromium, where one is installed)."""

import base64
import html.parser
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import snakemake
from docutils.core import publish_parts

from hpa.classes import CLASS_NAMES
from hpa.postprocess.figures import scores_figure
from hpa.postprocess.front_page import class_table, classes_page, scores_page

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")


def comparison(test: bool = True) -> pd.DataFrame:
    rows = [dict(ensemble="both", models="a b", method="per_class", oof_macro_f1=0.467, honest_macro_f1=0.478,
                 honest_low=0.441, honest_high=0.512, oof_no_skill=0.108),
            dict(ensemble="weak", models="a", method="global", oof_macro_f1=0.12, honest_macro_f1=0.105,
                 honest_low=0.09, honest_high=0.121, oof_no_skill=0.108)]
    table = pd.DataFrame(rows)
    if test:
        table = table.assign(test_macro_f1=[0.474, 0.1], test_low=[0.43, 0.08], test_high=[0.52, 0.12],
                             test_no_skill=[0.11, 0.11])
    return table


@pytest.mark.parametrize("test", [True, False])
def test_scores_page_renders_every_score_with_its_interval_and_no_skill(test):
    png = b"png" * 5000  # a figure's size: docutils drops a line over 10,000 characters
    body = publish_parts(scores_page(comparison(test), png), writer="html")["html_body"]
    assert body.count("<tr>") == 3 and f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in body
    assert "0.478 [0.441, 0.512]" in body and "0.108" in body and "no evidence of learning" in body
    assert ("0.474 [0.430, 0.520]" in body) == test and ("no-skill (test)" in body) == test


@pytest.mark.parametrize("test", [True, False])
def test_scores_figure_draws_with_and_without_test_labels(test, tmp_path, monkeypatch):
    """The figure itself, not only a PNG: every ensemble's score written out with its interval,
    in the order of the table, the test scores and their no-skill line only where labels exist."""
    import hpa.postprocess.figures as figures

    saved = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path, **_: saved.append(fig))
    table = comparison(test)
    if not test:  # real data: comparison.csv has the test columns, empty
        table = table.assign(test_macro_f1=float("nan"), test_low=float("nan"), test_high=float("nan"),
                             test_no_skill=float("nan"))
    scores_figure(table, tmp_path / "scores.png")
    ax = saved[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:2] == ["0.478 [0.441, 0.512]", "0.105 [0.090, 0.121]"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["both", "weak"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no-skill, out-of-fold images (0.108)" in legend
    assert ("0.474 [0.430, 0.520]" in texts) == test and ("no-skill, test images (0.110)" in legend) == test
    assert len(texts) == (4 if test else 2)


def test_class_table_counts_the_training_labels_and_renders_every_class():
    train = pd.DataFrame({"Target": ["0", "0 25", "7"]})
    table = class_table(train, CLASS_NAMES)
    assert table.loc[0, "train_images"] == 2 and table.loc[0, "train_percent"] == pytest.approx(66.67)
    assert table.loc[7, "name"] == "Golgi apparatus" and table["train_images"].sum() == 4
    body = publish_parts(classes_page(table), writer="html")["html_body"]
    assert body.count("<tr>") == 29 and "Rods &amp; rings" in body


class VisibleText(html.parser.HTMLParser):
    """The text of a page outside <script> and <style>: what a reader can see, not the data
    the page's scripts carry."""

    def __init__(self):
        super().__init__()
        self.hidden, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style") and self.hidden > 0

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def browser(*args, timeout=180) -> subprocess.CompletedProcess:
    """Headless Chromium (no sandbox: CI runs as root), with time for the report's scripts to draw."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--virtual-time-budget=20000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


@pytest.fixture(scope="module")
def built_report(demo_run, tmp_path_factory):
    report = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(demo_run, "--report", str(report))
    return report


@pytest.mark.workflow
@needs_chromium
def test_the_front_page_shows_every_score_and_the_no_skill_line_in_a_browser(demo_run, built_report):
    dom = browser("--dump-dom", built_report.as_uri()).stdout
    parser = VisibleText()
    parser.feed(dom)
    text = " ".join(" ".join(parser.parts).split())
    table = pd.read_csv(demo_run / "results/evaluation/comparison.csv")
    for row in table.itertuples():
        assert f"{row.honest_macro_f1:.3f} [{row.honest_low:.3f}, {row.honest_high:.3f}]" in text, row.ensemble
        assert f"{row.test_macro_f1:.3f} [{row.test_low:.3f}, {row.test_high:.3f}]" in text, row.ensemble
    assert "no-skill (OOF)" in text and f"{table['oof_no_skill'].iloc[0]:.3f}" in text
    assert "Golgi apparatus" in text, "the class table"
    assert "data:image/png;base64," in dom, "the scores figure, embedded"
    shot = built_report.with_name("front_page.png")
    browser(f"--screenshot={shot}", "--window-size=1280,2400", built_report.as_uri())
    assert shot.stat().st_size > 10_000


@pytest.mark.workflow
def test_the_demo_run_gives_each_score_one_interval_in_every_file(demo_run):
    import json

    record = json.loads((demo_run / "results/thresholds/main.json").read_text())
    evaluation = json.loads((demo_run / "results/evaluation/main.json").read_text())
    row = pd.read_csv(demo_run / "results/evaluation/comparison.csv").set_index("ensemble").loc["main"]
    for methods in ("results/metrics/main/threshold_methods.csv", "results/evaluation/main_methods.csv"):
        chosen = pd.read_csv(demo_run / methods).set_index("method").loc[record["method"]]
        assert [chosen["honest_low"], chosen["honest_high"]] == record["honest_macro_f1_interval"], methods
        assert [row["honest_low"], row["honest_high"]] == record["honest_macro_f1_interval"]
    chosen = pd.read_csv(demo_run / "results/evaluation/main_methods.csv").set_index("method").loc[record["method"]]
    assert chosen["test_macro_f1"] == evaluation["test_macro_f1"] == row["test_macro_f1"]
    assert [chosen["test_low"], chosen["test_high"]] == evaluation["test_macro_f1_interval"] == [
        row["test_low"], row["test_high"]]


@pytest.mark.workflow
def test_the_demo_run_writes_prediction_tables_with_names_and_a_class_table(demo_run):
    oof = pd.read_csv(demo_run / "results/ensembles/main/oof_predictions.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(demo_run / "results/ensembles/main/test_predictions.csv", dtype=str, keep_default_na=False)
    sub = pd.read_csv(demo_run / "results/submission/main.csv", dtype=str, keep_default_na=False)
    for table in (oof, test):
        assert {"Id", "Target", "target_names", "Predicted", "predicted_names", "missed", "extra"} <= set(table)
    assert list(test["Id"]) == list(sub["Id"]) and list(test["Predicted"]) == list(sub["Predicted"])
    classes = pd.read_csv(demo_run / "results/data/classes.csv")
    assert list(classes.columns) == ["class", "name", "train_images", "train_percent"] and len(classes) == 28
    assert classes["train_images"].sum() == sum(len(t.split()) for t in oof["Target"])
    assert (demo_run / "results/metrics/main/confusion.png").stat().st_size > 10_000

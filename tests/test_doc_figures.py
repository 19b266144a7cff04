"""Every figure the docs quote about a demo run is docs/figures.json's, which `python docs/figures.py
RUN_DIR` writes from one finished run; where machines differ the docs quote ranges, and the
recorded run must lie inside them."""

import importlib.util
import json
import re

import pytest

from conftest import REPO

SPEC = importlib.util.spec_from_file_location("figures", REPO / "docs/figures.py")
figures = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(figures)

FIGURES = json.loads((REPO / "docs/figures.json").read_text())
REGENERATE = ("after a finished demo run, run `python docs/figures.py RUN_DIR`: "
              "it rewrites docs/figures.json and the blocks")
# Which pages must carry which blocks: the README's demo figures, the demo's run, the per-cell results.
REQUIRED = {"README.md": {"quick_start", "summary", "demo_scores"}, "docs/demo.md": {"demo_run"},
            "docs/cells.md": {"cells"}}


def pages():
    return {str(p.relative_to(REPO)): p.read_text() for p in figures.PAGES}


@pytest.mark.parametrize("page", sorted(pages()))
def test_every_block_is_rendered_from_figures_json(page):
    text = pages()[page]
    for name, shown in figures.blocks(text):
        assert name in figures.RENDER, f"{page}: unknown figures block {name!r} (known: {sorted(figures.RENDER)})"
        assert shown == figures.RENDER[name](FIGURES), (
            f"{page}: block {name!r} differs from docs/figures.json; {REGENERATE}")


def test_the_pages_carry_their_blocks():
    found = {page: {name for name, _ in figures.blocks(text)} for page, text in pages().items()}
    missing = {page: sorted(names - found.get(page, set())) for page, names in REQUIRED.items()}
    missing = {page: names for page, names in missing.items() if names}
    assert not missing, f"figures blocks removed: {missing}"


def test_the_run_lies_inside_the_ranges_the_docs_quote():
    wrong = figures.outside_ranges(FIGURES)
    assert not wrong, (f"{wrong}: the quoted ranges no longer hold for the recorded run; if the recipe changed or a "
                       "machine explains it, widen RANGES in docs/figures.py, then regenerate: " + REGENERATE)


def test_the_range_check_refuses_a_score_outside(tmp_path):
    moved = json.loads(json.dumps(FIGURES))
    name = next(iter(moved["run"]["ensembles"]))
    moved["run"]["ensembles"][name]["test_macro_f1"] = moved["ranges"][name]["test"][1] + 0.01
    assert [w for w in figures.outside_ranges(moved) if w.startswith(f"{name} test")]


def outside_blocks(text: str) -> str:
    return figures.BLOCK.sub("", text)


def test_the_readme_quotes_no_run_figure_outside_the_blocks():
    """A score printed by hand (three decimals) would go stale with the next run."""
    stray = re.findall(r".{0,40}\b0\.\d{3}\b.{0,20}", outside_blocks((REPO / "README.md").read_text()))
    assert not stray, f"README.md quotes run figures outside a figures block: {stray}"


def test_a_changed_figure_is_caught():
    text = (REPO / "README.md").read_text()
    name, shown = next((n, s) for n, s in figures.blocks(text) if n == "demo_scores")
    changed = json.loads(json.dumps(FIGURES))
    first = next(iter(changed["run"]["ensembles"].values()))
    first["test_macro_f1"] = round(first["test_macro_f1"] + 0.001, 6)
    assert figures.RENDER[name](changed) != shown


def test_the_run_bears_out_what_docs_cells_concludes():
    """docs/cells.md: showing each cell alone beats a fixed centre map; the class maps do not, and
    their peaks land in the class's region no more often than a random point."""
    best = next(iter(FIGURES["run"]["ensembles"]))
    rows = {(r["measure"], r["baseline"]): r for r in FIGURES["run"]["cells"][best]}
    centre = "a fixed map bright in the middle"
    masked = rows["per-cell mAP at IoU 0.6, masked scores", centre]
    maps = rows["per-cell mAP at IoU 0.6, map scores", centre]
    pointing = next(r for (m, _), r in rows.items() if m.startswith("pointing game: all classes"))
    assert masked["difference_low"] > 0, f"masked no longer beats the centre map: {masked}; rewrite docs/cells.md"
    assert maps["difference_low"] <= 0, f"the class maps now beat the centre map: {maps}; rewrite docs/cells.md"
    assert pointing["difference_low"] <= 0, f"the maps now point better than chance: {pointing}; rewrite docs/cells.md"

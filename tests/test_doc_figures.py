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
    """docs/cells.md: the gated default beats both no-learning baselines over all images and apart where the
    cells agree and where they vary; where they vary it also beats the image's probabilities with the same
    partial-cell discount (learned), where they agree it only ties that (nothing left to learn inside a
    field); the located maps point better than chance, the model's own 2x2-grid maps do not."""
    best = next(iter(FIGURES["run"]["ensembles"]))
    rows = {(r["measure"], r["baseline"]): r for r in FIGURES["run"]["cells"][best]}
    image, centre = "image probabilities in every cell", "a fixed map bright in the middle"
    discounted = "image probabilities discounted for partial cells (no learning)"

    def gated(kind, baseline):
        start = "per-cell mAP at IoU 0.6, gated scores, " + kind
        return next(r for (m, b), r in rows.items() if m.startswith(start) and b == baseline)

    def pointing(maps):
        return next(r for (m, _), r in rows.items() if m.startswith(f"pointing game, {maps}: all classes (n="))

    rewrite = "; rewrite docs/cells.md"
    for kind in ("all images", "images whose cells agree", "images whose cells vary"):
        for baseline in (image, centre):
            assert gated(kind, baseline)["difference_low"] > 0, f"gated no longer beats {baseline} on {kind}{rewrite}"
    assert gated("images whose cells vary", discounted)["difference_low"] > 0.03, f"less is learned{rewrite}"
    agree = gated("images whose cells agree", discounted)
    assert abs(agree["difference"]) < 0.005, f"gated now differs from the discount alone where cells agree{rewrite}"
    located, model = pointing("located maps"), pointing("the model's maps (its feature grid)")
    assert located["difference_low"] > 0, f"the located maps no longer point better than chance: {located}"
    assert model["difference_low"] <= 0, f"the model's own maps now point better than chance: {model}{rewrite}"

"""Every stage is documented: each rule of workflow/rules/*.smk is named in README.md or a
docs page, and docs/architecture.md's picture of the library's layers is tests/test_layers.py's."""

import re

from conftest import REPO
from test_layers import LAYERS

RULE = re.compile(r"^(?:rule|checkpoint) (\w+):", re.M)


def rule_names() -> set[str]:
    return {name for path in (REPO / "workflow/rules").glob("*.smk") for name in RULE.findall(path.read_text())}


def documented_text() -> str:
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def test_the_rules_were_read():
    assert {"train", "predict", "new_image_panels", "evaluate_cells", "vocabulary"} <= rule_names()


def test_every_rule_is_named_in_the_docs():
    text = documented_text()
    missing = sorted(name for name in rule_names() if f"`{name}`" not in text)
    assert not missing, f"rules documented nowhere (add them to docs/stages.md's table): {missing}"


def test_every_rule_is_in_the_stages_table():
    rows = [line for line in (REPO / "docs/stages.md").read_text().splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    missing = sorted(rule_names() - named)
    assert not missing, f"docs/stages.md's stages table lacks the rules {missing}"


def mermaid_layers() -> dict[int, set[str]]:
    page = (REPO / "docs/architecture.md").read_text()
    diagram = re.search(r"```mermaid\n(.*?)```", page, re.S)
    assert diagram, "docs/architecture.md has no mermaid diagram of the layers"
    return {int(k): set(units.split()) for k, units in re.findall(r'^\s*L(\d+)\["([^"]+)"\]', diagram[1], re.M)}


def test_the_architecture_picture_is_the_layer_order_the_imports_keep():
    drawn = mermaid_layers()
    held = dict(enumerate(LAYERS))
    assert drawn == held, ("docs/architecture.md's layers differ from tests/test_layers.py's LAYERS: "
                           f"drawn {drawn}, held {held}")


def test_the_architecture_table_names_every_sub_package():
    page = (REPO / "docs/architecture.md").read_text()
    packages = {p.name for p in (REPO / "workflow/scripts/hpa").iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(name for name in packages if f"| `{name}` |" not in page)
    assert not missing, f"docs/architecture.md's table lacks the sub-packages {missing}"


def test_the_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text()
    missing = sorted(p.name for p in (REPO / "docs").glob("*.md") if f"](docs/{p.name})" not in readme)
    assert not missing, f"README.md does not link the docs pages {missing}"


def test_every_relative_link_of_the_docs_points_at_a_file():
    broken = []
    for page in [REPO / "README.md", REPO / "config/README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, f"links to missing files: {broken}"

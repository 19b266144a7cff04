"""Every default the docs state is the schema's: config/README.md's key tables, and the
"default `key: value`" statements of README.md, docs/*.md and config/README.md, read against
workflow/schemas/config.schema.yaml."""

import re

import pytest
import yaml
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
SECTION = re.compile(r"^## `([\w.]+)`")
ROW = re.compile(r"^\| (`[^|]+`) \| ([^|]+) \|")
README_DEFAULT = re.compile(r"default `([\w.]+): ([^`]+)`")


def deref(node: dict) -> dict:
    """The schema node with its $ref (into this schema) and allOf parts merged in."""
    while "$ref" in node:
        target = SCHEMA
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **rest, "properties": {**target.get("properties", {}), **rest.get("properties", {})}}
    for part in node.get("allOf", []):
        part = deref(part)
        node = {**part, **node, "properties": {**part.get("properties", {}), **node.get("properties", {})}}
    return node


def lookup(key: str, base: dict) -> dict | None:
    """The schema node of a dotted key under ``base`` (None where the schema has no such key)."""
    node = deref(base)
    for part in key.split("."):
        node = deref(node).get("properties", {}).get(part)
        if node is None:
            return None
    return deref(node)


def entry(section: str) -> dict | None:
    """The schema of one entry of a map section (models:, ensembles:), None for other sections."""
    node = lookup(section, SCHEMA)
    extra = node and node.get("additionalProperties")
    return deref(extra) if isinstance(extra, dict) else None


def resolve(key: str, section: str | None) -> dict:
    for base in ([entry(section)] if section and entry(section) else []) + [SCHEMA]:
        node = lookup(key, base)
        if node is not None:
            return node
    raise AssertionError(f"config/README.md documents `{key}` (section {section}), which the schema lacks")


def table_rows():
    """(section, key, stated default) for every row of config/README.md's key tables."""
    rows, section, key_table = [], None, False
    for line in (REPO / "config/README.md").read_text().splitlines():
        # Only the key tables (header "| key | default |"), not the other tables of the page.
        key_table = line.startswith("| key | default |") or (key_table and line.startswith("|"))
        if match := SECTION.match(line):
            section = match.group(1)
        elif key_table and (match := ROW.match(line)):
            keys = re.findall(r"`([\w.]+)`", match.group(1))
            stated = match.group(2).strip()
            values = [v.strip() for v in stated.split(",")] if len(keys) > 1 else [stated]
            assert len(values) == len(keys), f"config/README.md: {line[:80]}: one default per key"
            rows += [(section, k, v) for k, v in zip(keys, values)]
    return rows


ROWS = table_rows()


def test_the_tables_were_read():
    keys = {key for _, key, _ in ROWS}
    assert len(ROWS) > 120 and {"keep", "epochs", "demo.n_train", "threshold", "embedding.epochs"} <= keys


@pytest.mark.parametrize("section, key, stated", ROWS, ids=[f"{s}:{k}" for s, k, _ in ROWS])
def test_config_readme_default_is_the_schema_default(section, key, stated):
    node = resolve(key, section)
    if stated == "(required)":
        parent = entry(section) or SCHEMA
        assert key in parent.get("required", []), f"`{key}` is documented as required; the schema does not require it"
    elif stated == "see below":
        assert node.get("type") == "object", f"`{key}`: 'see below' is for a section of keys"
    else:
        assert "default" in node, f"`{key}`: config/README.md says default {stated}; the schema has none"
        assert yaml.safe_load(stated.strip("`")) == node["default"], (
            f"`{key}`: config/README.md says default {stated}, the schema {node['default']!r}")


def readme_statements():
    documents = [REPO / "README.md", REPO / "config/README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [match for doc in documents for match in README_DEFAULT.findall(doc.read_text())]


def test_readme_states_defaults_in_the_checked_form():
    keys = [key for key, _ in readme_statements()]
    assert "keep" in keys and len(keys) >= 3, keys


@pytest.mark.parametrize("key, stated", readme_statements())
def test_readme_default_is_the_schema_default(key, stated):
    """A README key is a top-level dotted key, or a key of a model's or an ensemble's entry."""
    nodes = [lookup(key, base) for base in (SCHEMA, entry("models"), entry("ensembles"))]
    node = next((n for n in nodes if n is not None), None)
    assert node is not None, f"the docs state a default for `{key}`, which the schema lacks"
    assert yaml.safe_load(stated) == node.get("default"), (
        f"the docs say default `{key}: {stated}`, the schema {node.get('default')!r}")

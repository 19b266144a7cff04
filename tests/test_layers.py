"""The library's layering: each sub-package imports only from the layers below it (and itself)."""

import ast
from pathlib import Path

HPA = Path(__file__).resolve().parents[1] / "workflow/scripts/hpa"

# Bottom to top. A unit is a sub-package, or one module of the foundation layer.
LAYERS = [
    {"classes", "files", "tables", "metrics", "thresholds", "parallel", "dihedral", "crops"},
    {"data"},
    {"labels", "external", "demo"},
    {"models"},
    {"training"},
    {"inference"},
    {"embedding"},
    {"postprocess"},
    {"new_images"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(dotted: str) -> str:
    return dotted.split(".")[1]


def hpa_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpa"):
            assert node.level == 0, f"{path}: relative import; write from hpa.<unit>... so the layer shows"
            if node.module == "hpa":
                found += [f"hpa.{a.name}" for a in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("hpa.")]
    return found


def modules():
    return [p for p in HPA.rglob("*.py") if p.name != "__init__.py" or p.parent != HPA]


def test_every_module_belongs_to_a_layer():
    units = {p.relative_to(HPA).parts[0].removesuffix(".py") for p in modules()}
    assert units == set(LEVEL), f"add new units to LAYERS: {sorted(units ^ set(LEVEL))}"


def violations(path: Path, unit: str, nested: bool) -> list[str]:
    """Imports of ``path`` (in ``unit``; ``nested`` inside a sub-package) that reach up or sideways."""
    wrong = []
    for name in hpa_imports(path):
        other = unit_of(name)
        if (other == unit and nested) or LEVEL[other] == LEVEL[unit] == 0:
            continue  # within one sub-package, or among the foundation's modules
        if LEVEL[other] >= LEVEL[unit]:
            wrong.append(f"{path.name} imports {name} (layer {LEVEL[other]} >= {LEVEL[unit]})")
    return wrong


def test_no_module_imports_from_a_layer_above_or_beside_it():
    wrong = []
    for path in modules():
        unit = path.relative_to(HPA).parts[0].removesuffix(".py")
        wrong += violations(path, unit, nested=path.parent != HPA)
    assert not wrong, "\n".join(wrong)


def test_the_check_refuses_upward_and_sideways_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from hpa.postprocess.blend import combine\nfrom hpa.external import dedup\n"
                   "from hpa.labels.sampling import class_weights\nfrom hpa.tables import read_labels\n")
    assert len(violations(bad, "labels", nested=True)) == 2  # postprocess (above), external (beside)
    assert violations(bad, "postprocess", nested=True) == []
    assert len(violations(bad, "metrics", nested=False)) == 3  # only tables is the foundation's own

"""The library's layering: each sub-package imports only from the layers below it (and itself).

An import is an edge, and so is naming a module in a string: ``importlib.import_module``,
``__import__`` or a ``"hpa.unit.module(:name)"`` constant that something resolves later (a
job that travels to another process, say). A dynamic import whose name is not a constant
cannot be checked at all, so it is refused.
"""

import ast
import re
from pathlib import Path

HPA = Path(__file__).resolve().parents[1] / "workflow/scripts/hpa"

# Bottom to top. A unit is a sub-package, or one module of the foundation layer.
LAYERS = [
    {"classes", "files", "figures", "tables", "metrics", "thresholds", "parallel", "dihedral", "crops",
     "config", "groups", "views"},
    {"data"},
    {"labels", "external", "demo", "cells"},  # cells: segmentation and per-cell labels, numpy only
    {"models"},
    {"runtime"},
    {"loop"},
    {"training", "inference"},  # predicting reads a checkpoint (runtime), never the training code
    {"embedding"},
    {"postprocess"},
    {"new_images"},
]
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
MODULE_PATH = re.compile(r"hpa(\.\w+)+(:\w+)?")
DYNAMIC = "a dynamic import"


def unit_of(dotted: str) -> str:
    return dotted.split(".")[1]


def exists(dotted: str) -> bool:
    """Whether ``dotted`` (``hpa.unit.module``) is a module or package of the library today."""
    path = HPA.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def dynamic_import_name(node: ast.Call) -> ast.expr | None:
    """The name argument of an ``import_module(...)`` / ``__import__(...)`` call; None for any other call."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called in ("import_module", "__import__") and node.args:
        return node.args[0]
    return None


def string_edges(tree: ast.AST) -> list[str]:
    """Modules named by strings: dynamic imports (DYNAMIC where the name is not a constant) and
    ``hpa.unit.module(:name)`` constants naming a module that exists."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (name := dynamic_import_name(node)) is not None:
            constant = isinstance(name, ast.Constant) and isinstance(name.value, str)
            if not constant:
                found.append(DYNAMIC)
            elif name.value.startswith("hpa."):
                found.append(name.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_PATH.fullmatch(node.value):
            module = node.value.partition(":")[0]
            if exists(module):
                found.append(module)
    return list(dict.fromkeys(found))


def hpa_imports(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpa"):
            assert node.level == 0, f"{path}: relative import; write from hpa.<unit>... so the layer shows"
            if node.module == "hpa":
                found += [f"hpa.{a.name}" for a in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("hpa.")]
    return found + string_edges(tree)


def modules():
    return [p for p in HPA.rglob("*.py") if p.name != "__init__.py" or p.parent != HPA]


def test_every_module_belongs_to_a_layer():
    units = {p.relative_to(HPA).parts[0].removesuffix(".py") for p in modules()}
    assert units == set(LEVEL), f"add new units to LAYERS: {sorted(units ^ set(LEVEL))}"


def violations(path: Path, unit: str, nested: bool) -> list[str]:
    """Imports of ``path`` (in ``unit``; ``nested`` inside a sub-package) that reach up or sideways."""
    wrong = []
    for name in hpa_imports(path):
        if name == DYNAMIC:
            wrong.append(f"{path.name} imports a module whose name is computed; import it by name")
            continue
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


def test_inference_and_embedding_import_nothing_from_training():
    """They run on the runtime layer and the shared loop; the classifier's training code is not theirs."""
    wrong = [f"{path.relative_to(HPA)} imports {name}" for unit in ("inference", "embedding")
             for path in (HPA / unit).glob("*.py") for name in hpa_imports(path) if unit_of(name) == "training"]
    assert not wrong, "\n".join(wrong)


def test_the_check_refuses_upward_and_sideways_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from hpa.postprocess.blend import combine\nfrom hpa.external import dedup\n"
                   "from hpa.labels.sampling import class_weights\nfrom hpa.tables import read_labels\n")
    assert len(violations(bad, "labels", nested=True)) == 2  # postprocess (above), external (beside)
    assert violations(bad, "postprocess", nested=True) == []
    assert len(violations(bad, "metrics", nested=False)) == 3  # only tables is the foundation's own


def test_the_check_refuses_string_dispatch(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import importlib\n"
        "job = {'entry': 'hpa.embedding.job:run_embed_job'}\n"  # a module path resolved by someone later
        "importlib.import_module('hpa.postprocess.blend')\n"
        "__import__('hpa.inference.tta')\n"
        "module, _, name = job['entry'].partition(':')\n"
        "getattr(importlib.import_module(module), name)\n"  # a name the check cannot read
        "note = 'see hpa.classes for the names; hpa.nothing.here is not a module'\n"
    )
    wrong = violations(bad, "training", nested=True)
    assert len(wrong) == 4, wrong
    assert any("computed" in w for w in wrong)
    assert len(violations(bad, "postprocess", nested=True)) == 1  # only the computed name

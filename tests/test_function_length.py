"""No function in the library over 60 lines (the developers' guide): a long function does several
things, and the split is what names them."""

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "workflow/scripts/hpa"
MAX_LINES = 60


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_library_function_is_over_60_lines():
    assert long_functions(LIBRARY) == []


def test_the_walk_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/long.py:1 too_long ({MAX_LINES + 1} lines)"]

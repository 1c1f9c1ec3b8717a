"""The house plan holds: no import runs from a lower layer to a higher one, and there are no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "py" / "geohpc"
# lower number = lower layer; a module may import its own layer (domain packages: each other) or below
LAYERS = {
    "errors": 0, "util": 0, "progress": 0, "raster_io": 0, "guards": 0, "tiff": 0, "": 0,
    "products": 1, "embed": 1, "classify": 1, "segment": 1, "synth": 1, "sure2": 1,
    "core": 2, "plans": 3, "preflight": 4, "ops": 5, "cli": 6, "__main__": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    top = module.split(".")[1] if module.count(".") else ""
    return LAYERS[top]


def imports(path: Path) -> set[str]:
    """Every geohpc module ``path`` imports, at any depth (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geohpc"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if (PKG.parent / (node.module.replace(".", "/") + f"/{a.name}.py")).exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("geohpc"))
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PKG.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    for mod in graph():
        assert layer(mod) >= 0, mod


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    bad = [f"{mod} (layer {layer(mod)}) imports {dep} (layer {layer(dep)})"
           for mod, deps in graph().items() for dep in deps if layer(dep) > layer(mod)]
    assert bad == []


def test_no_import_circles_between_modules() -> None:
    g = {m: {d for d in deps if d in graph_keys} for graph_keys in [set(graph())] for m, deps in graph().items()}
    # a package's __init__ re-exporting its modules is not a circle: drop edges from a module to its own package
    g = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(g.get(m, ())):
            if seen.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(g):
        if m not in seen:
            visit(m)
    assert cycles == []


def test_planted_violations_are_caught(tmp_path: Path) -> None:
    """The checks above can fail: a core module importing ops is a violation."""
    text = "from geohpc.ops.submit import submit\n"
    bad = tmp_path / "x.py"
    bad.write_text(text)
    assert "geohpc.ops.submit" in imports(bad)
    assert layer("geohpc.ops.submit") > layer("geohpc.core.site")

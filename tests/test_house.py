"""The house drawn from the imports: packages that import one way, and few loose modules at the top."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "normlab"
# What may sit at the top of src/normlab besides packages: the exceptions and small torch-only leaves.
TOP_LEAVES = {"__init__.py", "errors.py", "atomic.py", "chunks.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def normlab_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported normlab module, imported inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    local = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(f)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("normlab"):
            # ``from normlab.x import y``: y may be a module of package x; resolved against the tree below.
            for alias in node.names:
                out.append((f"{node.module}.{alias.name}", id(node) in local))
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in local) for a in node.names if a.name.startswith("normlab")]
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _ in normlab_imports(path):
            while target not in modules and "." in target:  # ``from pkg import symbol`` -> pkg
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges[name].add(target)
    return edges


def test_the_top_holds_packages_and_small_leaves_only():
    loose = sorted(p.name for p in SRC.glob("*.py") if p.name not in TOP_LEAVES)
    assert not loose, f"loose modules at the top of src/normlab: {loose}; give each a package"


def test_no_import_cycle_between_packages_or_modules():
    edges = graph()

    # A package's __init__ re-exports its modules: an edge pkg -> pkg.mod is not a cycle of ideas.
    # Every other path back to where it started is.
    def deps(m):
        return {t for t in edges[m] if not t.startswith(m + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(deps(m)):
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


# Modules that import an optional dependency at their top: importing them inside a function is the point.
OPTIONAL = {"normlab.report.html"}  # plotly (.[html])


def test_no_function_local_import_of_normlab_modules():
    local = [
        f"{p.relative_to(SRC.parent)}: {target}"
        for p in SRC.rglob("*.py")
        for target, inside in normlab_imports(p)
        if inside and target not in OPTIONAL
    ]
    assert not local, "function-local imports of normlab modules (a hidden cycle?): " + "; ".join(local)

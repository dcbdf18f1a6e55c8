"""No import cycle among lmlab's modules (issue 29).

The graph is read from the source with `ast`: every `import` of an lmlab module, at module level
or inside a function (lmlab defers heavy imports into functions, and a cycle through them is
still a cycle: two modules that cannot be understood, tested or moved apart). Imports under
`if TYPE_CHECKING:` are left out: they never run. Loaders a registry names as "module:function"
strings (lmlab.runs.RUN_KINDS) are not imports: that is how a registry breaks a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the lmlab package."""
    names = {}
    for path in sorted((src / "lmlab").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _runs(node: ast.AST) -> list[ast.AST]:
    """The child statements of `node` that can run (the body of `if TYPE_CHECKING:` cannot)."""
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        return list(node.orelse)
    return list(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The lmlab modules `module` imports (the package `lmlab` itself only re-exports)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        todo.extend(_runs(node))
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a.b import c` imports the module a.b.c when there is one, else a.b
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in modules and t not in ("lmlab", module))
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    modules = module_names(src)
    return {m: imports_of(m, path, modules) for m, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_lmlab_modules():
    found = list(cycles(import_graph()))
    described = [" <-> ".join(sorted(c)) for c in found]
    assert not found, f"import cycles: {described}"


def test_the_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    """The check can fail: a deferred import back is a cycle; a TYPE_CHECKING one is not."""
    pkg = tmp_path / "lmlab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lmlab.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from lmlab import c\n")
    (pkg / "c.py").write_text("def g():\n    from .a import x\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nimport lmlab.a\nif TYPE_CHECKING:\n    import lmlab.d2\n"
    )
    (pkg / "d2.py").write_text("import lmlab.d\n")
    graph = import_graph(tmp_path)
    assert graph["lmlab.c"] == {"lmlab.a"}
    assert cycles(graph) == [frozenset({"lmlab.a", "lmlab.sub.b", "lmlab.c"})]

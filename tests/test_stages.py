"""The package's stages import only stages below them, and every module belongs to a stage.

Imports are read from the source (module-level and inside functions alike, since most heavy
imports are lazy), so the check needs no import of TensorFlow or JAX.
"""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

# lowest first: a module may import its own stage and those before it
STAGES = ("errors", "runtime", "dataset", "input", "models", "training", "results", "bench", "cli")
PACKAGE = ROOT / "pipeline"


def stage_of(module: str) -> str:
    """'pipeline.input.reader' -> 'input'; the package's own entry points (`__main__`) count as cli."""
    parts = module.split(".")
    if len(parts) == 1:
        return "cli"
    return "cli" if parts[1] == "__main__" else parts[1]


def imports_of(path: Path) -> set[str]:
    """Every pipeline module `path` imports, as dotted names ('pipeline.dataset' for `from pipeline import dataset`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "pipeline"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "pipeline":
            if node.module == "pipeline":
                found |= {f"pipeline.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_belongs_to_a_stage():
    for path in PACKAGE.rglob("*.py"):
        assert stage_of(module_name(path)) in STAGES, path


def test_no_stage_imports_a_later_one():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = stage_of(module_name(path))
        for target in sorted(imports_of(path)):
            there = stage_of(target)
            if STAGES.index(there) > STAGES.index(here):
                upward.append(f"{module_name(path)} ({here}) imports {target} ({there})")
    assert upward == []


def test_the_check_sees_lazy_and_package_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from pipeline import dataset\n\ndef f():\n    import pipeline.bench.grid\n"
                      "    from pipeline.input.reader import batch_stream\n")
    assert imports_of(source) == {"pipeline.dataset", "pipeline.bench.grid", "pipeline.input.reader"}
    assert [stage_of(m) for m in sorted(imports_of(source))] == ["bench", "dataset", "input"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle of `graph` (module -> modules it imports) once, as the modules around it."""
    found, done = [], set()

    def visit(node, path):
        if node in path:
            cycle = path[path.index(node):]
            if frozenset(cycle) not in done:
                done.add(frozenset(cycle))
                found.append(cycle)
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])

    for node in sorted(graph):
        visit(node, [])
    return found


def test_no_modules_import_each_other():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: {t for t in imports_of(path) if t in modules and t != name} for name, path in modules.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

"""The package's layering (docs/architecture.md) holds: no module imports from a higher layer, the
stage packages import each other without cycles (but the one documented), and the document lists
every package with the layer the test uses."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cortexgraph"
DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

#: layer of every top-level package or module of cortexgraph, lowest first
LAYERS = {
    "errors": 0,
    "outputs": 0,
    "data": 1,
    "derivatives": 1,
    "meshes": 1,
    "training": 1,
    "reconstruct": 2,
    "resources": 2,
    "build_graph": 3,
    "mapping": 3,
    "features": 3,
    "gnn": 3,
    "lsm": 3,
    "maps3d": 3,
    "render": 3,
    "synth": 3,
    "scans": 3,
    "execution": 4,
    "pipeline": 4,
    "cli": 5,
    "web": 5,
}

#: cycles between stage packages that are allowed, each with its reason (docs/architecture.md)
KNOWN_CYCLES = {
    frozenset({"features", "lsm"}): "the 3D-distance pre-training (features) trains the LSM's "
    "high-resolution encoder (lsm.networks), and `lsm --init-hr` reads that run back",
}


def imports_between_packages(root: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """``{(importer, imported): ["file:line", ...]}`` over every ``cortexgraph.*`` import of the
    package (function-level imports included), between different top-level packages."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",) or parts == ("__main__",):
            continue
        importer = parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "cortexgraph":
                    names = [f"cortexgraph.{alias.name}" for alias in node.names]
                else:
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                bits = name.split(".")
                if bits[0] != "cortexgraph" or len(bits) < 2 or bits[1] == "__version__":
                    continue
                if bits[1] != importer:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    found[(importer, bits[1])].append(where)
    return dict(found)


def top_level_names(root: Path = PACKAGE) -> set[str]:
    names = {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    names |= {p.stem for p in root.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return names


def cycles(edges: set[tuple[str, str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one package (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

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
                out.append(frozenset(component))

    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    missing = sorted(top_level_names() - set(LAYERS))
    assert not missing, (
        f"cortexgraph/{missing[0]} has no layer: add it to LAYERS here and to the table in "
        "docs/architecture.md"
    )


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{where}: {a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
        for (a, b), places in imports_between_packages().items()
        if LAYERS.get(b, -1) > LAYERS.get(a, 99)
        for where in places
    ]
    assert not upward, "\n".join(upward)


def test_stage_packages_import_each_other_without_cycles():
    edges = set(imports_between_packages())
    found = set(cycles(edges))
    unexpected = found - set(KNOWN_CYCLES)
    assert not unexpected, f"import cycles between packages: {[sorted(c) for c in unexpected]}"
    stale = set(KNOWN_CYCLES) - found
    assert not stale, f"documented cycles that no longer exist (remove them): {stale}"


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    """The checks above are not vacuous: a data module importing the CLI is an upward import, and
    two stage packages importing each other are a cycle."""
    package = tmp_path / "cortexgraph"
    for name in ("data", "cli", "gnn", "maps3d"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "data" / "bad.py").write_text("from cortexgraph.cli.main import app\n")
    (package / "gnn" / "a.py").write_text("def f():\n    from cortexgraph.maps3d import b\n")
    (package / "maps3d" / "b.py").write_text("import cortexgraph.gnn.a\n")
    edges = imports_between_packages(package)
    assert edges[("data", "cli")] == ["cortexgraph/data/bad.py:1"]
    assert edges[("gnn", "maps3d")] == ["cortexgraph/gnn/a.py:2"]
    assert cycles(set(edges)) == [frozenset({"gnn", "maps3d"})]


def test_the_document_lists_the_same_layers():
    text = DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d)\s*\|([^|]+)\|", text, flags=re.M)
    documented = {
        name.strip(" `/"): int(layer)
        for layer, cell in rows
        for name in cell.split(",")
        if name.strip(" `/")
    }
    assert documented == LAYERS, (
        "docs/architecture.md's layer table differs from tests/test_architecture.py: "
        f"{sorted(set(documented.items()) ^ set(LAYERS.items()))}"
    )


def test_every_file_level_stage_is_named_in_the_document():
    """A module that runs a stage under the contract (opens a ``StageRun``, directly or through
    ``derivatives.run_stage``) is where that stage is orchestrated: docs/architecture.md must name
    it."""
    text = DOC.read_text(encoding="utf-8")
    stage_files = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(call in path.read_text(encoding="utf-8") for call in ("StageRun(", "run_stage("))
        and path.parent.name != "derivatives"
    )
    assert "build_graph/stage.py" in stage_files
    unnamed = [f for f in stage_files if f"`{f}`" not in text]
    assert not unnamed, f"file-level stages missing from docs/architecture.md: {unnamed}"

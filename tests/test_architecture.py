"""The layers of dmx (docs/architecture.md): each imports only the layers below it, and no import cycle.

The imports are read from the source (AST), every one of them: module level and
inside functions alike, since a function-level import is still a dependency.
Only imports under ``if TYPE_CHECKING:`` are left out: they are annotations,
never executed. A module that belongs to no layer fails the test, so a new
package has to be given its place in :data:`LAYERS`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dmx"

#: Bottom to top. A module may import its own group and any group of a lower rank; groups of the
#: same rank (e.g. ``detect`` and ``tracking``) do not import each other. Packages that do not
#: exist yet (being written on other branches) already have their place.
LAYERS: list[list[tuple[str, tuple[str, ...]]]] = [
    # the types and helpers every layer shares
    [
        (
            "core",
            (
                "dmx.errors",
                "dmx.files",
                "dmx.anatomy",
                "dmx.landmarks",
                "dmx.analysis",
                "dmx.schema",
                "dmx.data",
                "dmx.threads",
                "dmx.__version__",
            ),
        )
    ],
    [("io", ("dmx.io",))],
    [("detect", ("dmx.detect",)), ("tracking", ("dmx.tracking",))],
    [("measure", ("dmx.measure",))],
    [("interpretation", ("dmx.normative", "dmx.compare"))],
    [("report", ("dmx.report",))],
    [("dicom outputs", ("dmx.dicom",))],
    [("pipeline", ("dmx.pipeline", "dmx.static"))],
    [("batch", ("dmx.batch",)), ("aggregate", ("dmx.aggregate",))],
    [("network listener", ("dmx.net",))],
    # offline tools: synthetic studies, fitting the detector; nothing below the CLI imports them
    [("phantom", ("dmx.phantom",))],
    [("training", ("dmx.training",))],
    [("command line and public API", ("dmx.cli", "dmx.__main__", "dmx"))],
]


def _group_of(module: str) -> tuple[int, str] | None:
    """(rank, group name) of a module: the longest matching prefix wins (``dmx`` itself only exactly)."""
    best: tuple[int, int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for name, prefixes in groups:
            for prefix in prefixes:
                hit = module == prefix or (prefix != "dmx" and module.startswith(prefix + "."))
                if hit and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), rank, name)
    return None if best is None else (best[1], best[2])


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = getattr(test, "id", None) or getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    out |= {id(n) for n in ast.walk(stmt)}
    return out


def imports_of(module: str, source: str, known: set[str], *, is_package: bool) -> dict[str, int]:
    """``{imported dmx module: line}`` for every import in ``source`` (relative ones resolved).

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``;
    ``from dmx import __version__`` is the version string (core), not the public API.
    """
    tree = ast.parse(source)
    skip = _type_checking_nodes(tree)
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "dmx" or alias.name.startswith("dmx."):
                    out.setdefault(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == "dmx" or target.startswith("dmx.")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.setdefault(sub, node.lineno)
                elif target == "dmx" and alias.name == "__version__":
                    out.setdefault("dmx.__version__", node.lineno)
                else:
                    out.setdefault(target, node.lineno)
    out.pop(module, None)
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` over every ``.py`` file of the package."""
    files = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    known = set(files)
    return {
        name: imports_of(name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py")
        for name, path in files.items()
    }


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Every import of a higher layer, or of another group of the same rank, and every unplaced module."""
    problems = []
    for module, deps in sorted(graph.items()):
        here = _group_of(module)
        if here is None:
            problems.append(f"{module}: belongs to no layer (add it to LAYERS and docs/architecture.md)")
            continue
        for dep, line in sorted(deps.items()):
            there = _group_of(dep)
            if there is None:
                continue  # reported as a module of its own
            if there[1] == here[1] or there[0] < here[0]:
                continue
            problems.append(
                f"{module} (line {line}, layer {here[1]!r}) imports {dep} (layer {there[1]!r}, "
                f"{'the same rank' if there[0] == here[0] else 'above it'})"
            )
    return problems


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


# --------------------------------------------------------------------------- the package itself


def test_every_import_goes_down_the_layers():
    graph = import_graph()
    assert len(graph) > 50  # the whole package was read
    assert layer_violations(graph) == []


def test_no_import_cycle():
    assert import_cycles(import_graph()) == []


def test_runtime_path_does_not_reach_the_offline_tools():
    """Nothing the pipeline runs (directly or through what it imports) imports the phantom or the fitting."""
    graph = import_graph()
    seen, todo = set(), ["dmx.pipeline", "dmx.batch", "dmx.aggregate"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [d for d in graph.get(m, {}) if d in graph]
    assert "dmx.detect" in seen and "dmx.report.render" in seen  # the walk went through the runtime path
    assert sorted(m for m in seen if m.startswith(("dmx.phantom", "dmx.training"))) == []


def test_import_dmx_stays_light():
    """``import dmx`` loads the public names lazily: no pipeline, report, image or DICOM library."""
    code = (
        "import sys, dmx\n"
        "heavy = ['dmx.pipeline', 'dmx.report', 'dmx.io.load', 'dmx.tracking', 'cv2', 'pydicom', 'jinja2', "
        "'scipy', 'skimage']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


# --------------------------------------------------------------------------- what the checker catches


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "dmx"
    for rel, text in files.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return pkg


def test_checker_reports_an_upward_function_level_import(tmp_path):
    pkg = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "pipeline.py": "from dmx.io import load\n",
            "io/__init__.py": "",
            "io/load.py": "def f():\n    from dmx.pipeline import analyze\n",
            "io/dicom.py": "from . import load\nfrom ..errors import DmxError\n",
            "errors.py": "",
        },
    )
    graph = import_graph(pkg)
    assert graph["dmx.io.dicom"] == {"dmx.io.load": 1, "dmx.errors": 2}  # relative imports resolved
    assert layer_violations(graph) == [
        "dmx.io.load (line 2, layer 'io') imports dmx.pipeline (layer 'pipeline', above it)"
    ]


def test_checker_reports_peers_cycles_and_unplaced_modules(tmp_path):
    pkg = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "detect/__init__.py": "import dmx.tracking.tracker\n",
            "tracking/__init__.py": "",
            "tracking/tracker.py": "",
            "report/__init__.py": "",
            "report/a.py": "from dmx.report import b\n",
            "report/b.py": "def g():\n    import dmx.report.a\n",
            "report/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from dmx.cli import app\n",
            "gadget.py": "",
        },
    )
    graph = import_graph(pkg)
    assert graph["dmx.report.c"] == {}  # annotations only
    assert layer_violations(graph) == [
        "dmx.detect (line 1, layer 'detect') imports dmx.tracking.tracker (layer 'tracking', the same rank)",
        "dmx.gadget: belongs to no layer (add it to LAYERS and docs/architecture.md)",
    ]
    assert import_cycles(graph) == [["dmx.report.a", "dmx.report.b"]]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("dmx.analysis", "core"),
        ("dmx.io.dicom", "io"),
        ("dmx.dicom.sr", "dicom outputs"),
        ("dmx.dicomx", None),
        ("dmx.normative", "interpretation"),
        ("dmx.compare.followup", "interpretation"),
        ("dmx.net.listener", "network listener"),
        ("dmx", "command line and public API"),
    ],
)
def test_layer_lookup(module, layer):
    found = _group_of(module)
    assert (found[1] if found else None) == layer


#: Modules whose error messages may start with a command-line option: only the command line itself.
OPTION_MESSAGES_ALLOWED = ("dmx.cli",)


def _raised_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, leading text) of each string or f-string argument in every ``raise`` statement."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            joined = [sub for sub in ast.walk(node.exc) if isinstance(sub, ast.JoinedStr)]
            parts = {id(v) for sub in joined for v in sub.values}
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in parts:
                    out.append((sub.lineno, sub.value))
                elif isinstance(sub, ast.JoinedStr) and isinstance(sub.values[0], ast.Constant):
                    out.append((sub.lineno, str(sub.values[0].value)))
    return out


def test_library_errors_name_parameters_not_options():
    """``raise UsageError("--mm-per-px must ...")`` belongs in the CLI; the library raises
    ``ParameterError("mm_per_px", "must ...")`` and the CLI names the option."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith(OPTION_MESSAGES_ALLOWED):
            continue
        for line, text in _raised_texts(ast.parse(path.read_text(encoding="utf-8"))):
            if text.startswith("--"):
                found.append(f"{name} line {line}: {text!r}")
    assert found == []
    # and the check sees such a message where there is one
    sample = ast.parse('def f(x):\n    raise UsageError(f"--mm-per-px must be > 0, got {x}")\n')
    assert _raised_texts(sample) == [(2, "--mm-per-px must be > 0, got ")]

"""Principle 1: nothing outside medviewer.qt imports Qt (import-linter checks it too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "medviewer"
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_qt_import_outside_medviewer_qt() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "qt" not in p.relative_to(PACKAGE).parts[:1] and _imports(p) & set(QT_MODULES)
    ]
    assert offenders == []


def test_core_imports_without_loading_qt() -> None:
    code = (
        "import sys, medviewer.cli, medviewer.imaging, medviewer.config, medviewer.demo.samples; "
        "print([m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint)], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """medviewer modules this module imports, at the top or inside functions; not those in
    `if TYPE_CHECKING:` blocks (annotations only)."""
    found = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def _module_cycles() -> list[list[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {m: _runtime_imports(p, set(files)) - {m} for m, p in files.items()}
    cycles: list[list[str]] = []
    state = dict.fromkeys(edges, 0)  # 0 new, 1 on the current path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(edges[m]):
            if state[n] == 1:
                cycles.append([*path[path.index(n) :], n])
            elif state[n] == 0:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(edges):
        if state[m] == 0:
            visit(m, [m])
    return cycles


def test_no_import_cycles_between_modules() -> None:
    # A package's __init__ re-exporting its submodules, which import names from it, is the
    # usual Python idiom, not a dependency cycle between modules.
    real = [c for c in _module_cycles() if not all(x.startswith(min(c, key=len)) for x in c)]
    assert real == []


def test_module_and_class_names_are_unique() -> None:
    """One name, one meaning: `errors.py` is each package's own error types, by convention."""
    modules = [
        p.name for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
    ]
    twice = {n for n in modules if modules.count(n) > 1} - {"errors.py"}
    assert twice == set()
    classes: dict[str, list[str]] = {}
    for p in PACKAGE.rglob("*.py"):
        for node in ast.parse(p.read_text(), str(p)).body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(str(p.relative_to(PACKAGE)))
    assert {k: v for k, v in classes.items() if len(v) > 1} == {}


def test_storage_sql_lives_in_the_workspace_package() -> None:
    offenders = []
    for p in PACKAGE.rglob("*.py"):
        if p.relative_to(PACKAGE).parts[0] == "workspace":
            continue
        text = p.read_text()
        if "sqlite3" in _imports(p) or ".db.execute(" in text or "ws.db" in text:
            offenders.append(str(p.relative_to(PACKAGE)))
    assert offenders == []

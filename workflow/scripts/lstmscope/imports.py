"""The library modules that a script runs when it is imported, read from its source.

The workflow lists them as a rule's inputs (``lib`` in ``workflow/rules/common.smk``), so that editing a module
reruns exactly the rules whose scripts import it, directly or through other modules; no job imports this one.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "lstmscope"


def _imported_names(source: Path, in_package: bool) -> list[str]:
    """Names of the package's modules (or of things in them) that ``source`` imports; imports inside
    functions count too. Relative imports count only in a module of the package."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"), filename=str(source))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    names += ["__init__", *parts[1:2]]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] == PACKAGE:
                names.append("__init__")
                names += module.split(".")[1:2] if "." in module else [a.name for a in node.names]
            elif node.level >= 1 and in_package:
                names += [module.split(".")[0]] if module else [a.name for a in node.names]
    return names


def library_modules(script: Path, package_dir: Path) -> list[str]:
    """The modules of the package in ``package_dir`` (names without ``.py``, sorted) that importing ``script``
    runs, transitively: importing ``lstmscope.x`` runs the package's ``__init__`` as well. A name imported from
    the package that is not a module of it (a function) is no module, and is left out."""
    script, package_dir = Path(script), Path(package_dir)
    seen: set[str] = set()
    todo = [(script, script.parent.resolve() == package_dir.resolve())]
    while todo:
        source, in_package = todo.pop()
        for name in _imported_names(source, in_package):
            file = package_dir / f"{name}.py"
            if name not in seen and file.is_file():
                seen.add(name)
                todo.append((file, True))
    return sorted(seen)

"""lstmscope.imports.library_modules: what the workflow lists as a rule's library inputs, read from a script's
source. Checked on a small package written here, whose imports the test chooses, and on the real library."""
from __future__ import annotations

from pathlib import Path

from lstmscope.imports import library_modules

from conftest import REPO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def package(tmp_path: Path) -> Path:
    pkg = tmp_path / "lstmscope"
    write(pkg / "__init__.py", "from .base import pin\n")
    write(pkg / "base.py", "import os\n")
    write(pkg / "reader.py", "from . import base\nfrom .fmt import number\n")
    write(pkg / "fmt.py", "from .cycle import x\n")
    write(pkg / "cycle.py", "from .fmt import number\n")  # imports back: the walk must stop
    write(pkg / "lazy.py", "def f():\n    from .heavy import g\n    return g\n")
    write(pkg / "heavy.py", "import numpy\n")
    write(pkg / "unused.py", "import lstmscope.reader\n")
    return pkg


def test_transitive_relative_and_function_level_imports_count(tmp_path):
    pkg = package(tmp_path)
    script = write(tmp_path / "scripts" / "stage.py",
                   "import sys\nfrom lstmscope.reader import read\nfrom lstmscope import lazy, some_function\n")
    # not "unused" (no one imports it), not "some_function" (no module of that name)
    assert library_modules(script, pkg) == ["__init__", "base", "cycle", "fmt", "heavy", "lazy", "reader"]


def test_plain_import_of_a_submodule_and_nothing_else(tmp_path):
    pkg = package(tmp_path)
    script = write(tmp_path / "scripts" / "other.py", "import lstmscope.base as b\n")
    assert library_modules(script, pkg) == ["__init__", "base"]


def test_relative_imports_of_a_script_outside_the_package_are_not_the_package(tmp_path):
    pkg = package(tmp_path)
    script = write(tmp_path / "scripts" / "rel.py", "from . import reader\n")
    assert library_modules(script, pkg) == []


def test_the_real_scripts_reach_the_kernels_pin_and_the_atomic_writes():
    """Every job imports the package (which pins the kernels) and writes through atomic: each script's list has
    them."""
    scripts = REPO / "workflow" / "scripts"
    package_dir = scripts / "lstmscope"
    for script in sorted(scripts.glob("*.py")):
        modules = library_modules(script, package_dir)
        assert {"__init__", "kernels", "atomic"} <= set(modules), f"{script.name}: {modules}"

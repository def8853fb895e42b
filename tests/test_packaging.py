"""lstmscope installed from a wheel (``pip install .``, not only ``-e``) has every file its modules read."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "workflow" / "scripts" / "lstmscope"


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    try:
        import setuptools  # noqa: F401  (builds the wheel)
    except ImportError:
        skip_or_fail("needs setuptools")
    src = tmp_path / "src"
    (src / "workflow" / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(PACKAGE, src / "workflow" / "scripts" / "lstmscope",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheel, = (tmp_path / "dist").glob("lstmscope-*.whl")
    held = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("lstmscope/")}
    expected = {f"lstmscope/{p.name}" for p in PACKAGE.iterdir() if p.is_file() and p.suffix != ".pyc"}
    assert any(name.endswith(".html") for name in expected)  # the explorers' templates
    assert expected - held == set()

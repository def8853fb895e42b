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


# Bounds an environment keeps below pyproject's: editing envs/torch.yaml would retrain every model of a run made with
# --sdm conda (Snakemake reruns a job whose environment changed), for a full-disk crash of h5py < 3.10 in the dump, a
# jsonschema its rules do not import and numpy 1.24.0's fault in a figure they do not draw; a new environment gets
# current versions anyway.
KEPT_LOWER = {"torch.yaml": {"h5py": "3.8", "jsonschema": "4.0", "numpy": "1.24"}}


def test_the_conda_environments_ask_for_pyprojects_lower_bounds():
    """envs/*.yaml (``--sdm conda``) and pyproject.toml name the same lowest versions (torch is conda-forge's
    pytorch), so that a bound raised for a reason (``.ci/oldest`` tests them) is raised in all three, but for the
    bounds KEPT_LOWER names."""
    import tomllib

    import yaml
    from packaging.requirements import Requirement

    def lowest(requirement: str) -> tuple[str, str]:
        r = Requirement(requirement)
        (low,) = [s.version for s in r.specifier if s.operator == ">="]
        return r.name.lower(), low

    pyproject = dict(map(lowest, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]))
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        bounds = {}
        for dep in yaml.safe_load(env.read_text())["dependencies"]:
            if not dep.startswith("python="):  # (conda's pin of the interpreter, no PEP 508 requirement)
                name, low = lowest(dep)
                bounds["torch" if name == "pytorch" else name] = low
        kept = KEPT_LOWER.get(env.name, {})
        assert bounds and bounds == {k: kept.get(k, pyproject.get(k)) for k in bounds}, env.name

"""The pinned CPU kernels (lstmscope.kernels): the same numbers on any x86-64 machine with AVX2."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import skip_or_fail
from embedding_data import write_activations
from lstmscope import kernels
from lstmscope.kernels import PORTABLE_KERNELS, cpu_has_avx2, pin_portable_kernels

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
HEAVY = {"numpy", "pandas", "scipy", "sklearn", "torch", "openTSNE", "matplotlib", "h5py"}

EMBED = textwrap.dedent("""
    import sys, hashlib
    from lstmscope.embedding import TSNESettings, embed_tsne  # first, as in the pipeline's scripts
    import pandas as pd
    from threadpoolctl import threadpool_info
    embed_tsne(sys.argv[1], sys.argv[2], layer=2, state="c", max_tokens=2000, n_jobs=1,
               settings=TSNESettings(pca_components=50, perplexity=30, n_iter=150, early_exaggeration_iter=50, seed=1))
    cores = sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"})
    xy = pd.read_csv(sys.argv[2])[["x", "y"]].to_numpy()
    print(",".join(cores), hashlib.sha256(xy.tobytes()).hexdigest())
""")


def _clean_env(**env) -> dict[str, str]:
    """This process's environment without the pinned variables (which conftest set), plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if k not in PORTABLE_KERNELS}, **env}


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    return write_activations(tmp_path_factory.mktemp("kernels") / "d0.0_r0" / "test.h5", n_tokens=2000, hidden=64)


def _embed_with(states: Path, tmp_path: Path, **env) -> tuple[str, str]:
    """(OpenBLAS kernels, digest of the t-SNE map) of the embedding stage in a fresh process."""
    script = tmp_path / "embed.py"
    script.write_text(EMBED)
    r = subprocess.run([sys.executable, str(script), str(states), str(tmp_path / "map.csv")], env=_clean_env(**env),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cores, digest = r.stdout.split()
    return cores, digest


def needs_avx2() -> None:
    if not cpu_has_avx2():
        skip_or_fail("needs an x86-64 CPU with AVX2")


def test_the_embedding_computes_with_the_blas_kernels_of_any_avx2_cpu(states, tmp_path):
    """An AVX-512 machine's OpenBLAS (SkylakeX kernels) drew another t-SNE map than an AVX2 machine's
    (Haswell kernels). Importing lstmscope pins Haswell's: the stage draws the map of a process told to."""
    needs_avx2()
    haswell = _embed_with(states, tmp_path, OPENBLAS_CORETYPE="Haswell")
    assert haswell[0] == "Haswell"
    assert _embed_with(states, tmp_path) == haswell
    older = _embed_with(states, tmp_path, OPENBLAS_CORETYPE="SandyBridge")  # a setting of the environment wins
    assert older[0] == "Sandybridge"
    assert older[1] != haswell[1], "other kernels, another map: the pin is what makes two machines agree"


def test_the_pinned_blas_kernels_compute_a_gram_matrix_on_two_threads():
    """numpy 2.5's OpenBLAS (0.3.34) gives a pinned core type the GEMM blocking of an AMD Zen 4/5 host (OpenBLAS
    issues 6013 and 6021): on this project's EPYC its Haswell kernels crashed on AᵀA (dsyrk) of a 2000 x 64 matrix
    on two threads, as the t-SNE test above then did. pyproject leaves numpy 2.5 out; this names the cause where
    another numpy brings that OpenBLAS back."""
    needs_avx2()
    product = textwrap.dedent("""
        import lstmscope  # pins the kernels, as the pipeline's scripts do
        import numpy as np
        a = np.random.default_rng(0).standard_normal((2000, 64))
        gram = a.T @ a
        assert np.allclose(gram, np.einsum("ti,tj->ij", a, a))
        print(np.__version__)
    """)
    r = subprocess.run([sys.executable, "-c", product], env=_clean_env(OPENBLAS_NUM_THREADS="2"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (f"numpy {version('numpy')}: its BLAS failed on the pinned kernels ({r.returncode}); "
                               f"OpenBLAS 0.3.34 on AMD Zen 4/5 crashes so (OpenBLAS issue 6021) {r.stderr[-2000:]}")
    assert r.stdout.strip() == version("numpy")


def test_the_environment_wins_and_nothing_is_pinned_without_avx2(monkeypatch):
    for name in PORTABLE_KERNELS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Zen")
    monkeypatch.setattr(kernels, "cpu_has_avx2", lambda: True)
    assert pin_portable_kernels() == {**PORTABLE_KERNELS, "OPENBLAS_CORETYPE": "Zen"}
    for name in PORTABLE_KERNELS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kernels, "cpu_has_avx2", lambda: False)  # an ARM or a pre-2013 x86 machine
    assert pin_portable_kernels() == {} and not set(PORTABLE_KERNELS) & set(os.environ)


def test_cpu_has_avx2_agrees_with_numpys_own_cpu_detection(monkeypatch):
    if not Path("/proc/cpuinfo").is_file():
        skip_or_fail("no /proc/cpuinfo")
    try:  # numpy's runtime detection (CPUID), not our reading
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.x, as pyproject allows
        from numpy.core._multiarray_umath import __cpu_features__

    assert cpu_has_avx2() == bool(__cpu_features__.get("AVX2"))
    monkeypatch.setattr(kernels.platform, "machine", lambda: "arm64")
    assert not cpu_has_avx2()


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.name)
def test_every_script_imports_lstmscope_before_numpy_or_torch(script):
    """Numpy loads OpenBLAS, which reads its kernel choice then: lstmscope has to be imported first."""
    for node in ast.parse(script.read_text()).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        roots = {n.split(".")[0] for n in names}
        if "lstmscope" in roots:
            return
        assert not roots & HEAVY, f"{script.name} imports {sorted(roots & HEAVY)} before lstmscope"


@pytest.mark.parametrize("code,late", [
    ("import lstmscope, numpy, torch; torch.ones(3).sum()", None),
    ("import numpy, lstmscope", "numpy's OpenBLAS loaded before lstmscope"),
    ("import torch; torch.ones(3).sum(); import lstmscope", "torch (a tensor operation already ran)"),
], ids=["lstmscope first", "numpy first", "torch ran first"])
def test_a_process_that_loaded_the_libraries_first_is_warned(code, late):
    needs_avx2()
    r = subprocess.run([sys.executable, "-c", code], env=_clean_env(PYTHONPATH=str(SCRIPTS)), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    if late is None:
        assert "RuntimeWarning" not in r.stderr, r.stderr
    else:
        assert late in r.stderr and "import lstmscope first" in r.stderr, r.stderr

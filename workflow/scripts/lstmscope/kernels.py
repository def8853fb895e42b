"""The CPU kernels lstmscope computes with: the same on every x86-64 CPU with AVX2 (2013 on), Intel's or AMD's.

Torch, MKL and OpenBLAS each pick their vectorised kernels by the processor they run on, and
the AVX-512 ones round differently from the AVX2 ones: from the same config and seed an AVX-512
machine and an AVX2 one trained different models and drew different t-SNE maps. Torch's and
OpenBLAS's are pinned to their AVX2 kernels, which they run on any processor that has AVX2. MKL
(torch's matrix products) runs a branch it is told to on Intel processors only; elsewhere it takes
its own (an AMD EPYC told ``MKL_CBWR=AVX2`` trained the default d0.0_r0 to test perplexity 439.6,
Intel machines to 421.6). Its ``COMPATIBLE`` branch is the one MKL keeps on every x86 processor, so
MKL is pinned to that, at the price of slower matrix products (about 1.7 times the training time at
the default size). The libraries read these variables once, when they load (OpenBLAS, with numpy)
or at their first operation (torch, MKL), so :func:`pin_portable_kernels` runs when ``lstmscope`` is
imported: a pipeline script imports it before numpy or torch. A variable that the environment sets
already wins; on a CPU without AVX2, or not x86-64, nothing is pinned. A process that imported
numpy (or ran a torch operation) before lstmscope keeps that library's own kernels, and is warned:
its numbers may differ from the pipeline's in the last bits.
"""
from __future__ import annotations

import os
import platform
import sys
import warnings

PORTABLE_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",   # torch's vectorised kernels
    "MKL_CBWR": "COMPATIBLE",        # MKL's branch for torch's matrix products: the one it keeps on any vendor's CPU
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's BLAS (PCA, t-SNE, the histograms' sums)
}


def cpu_has_avx2() -> bool:
    """Whether this is an x86-64 CPU with AVX2 (read from /proc/cpuinfo; False where it cannot be read)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx2" in line.split()
    except OSError:
        pass
    return False


def pin_portable_kernels() -> dict[str, str]:
    """Set :data:`PORTABLE_KERNELS` in the environment where it does not set them already (on an x86-64
    CPU with AVX2); returns the variables in effect."""
    if cpu_has_avx2():
        pinned_now = [name for name in PORTABLE_KERNELS if name not in os.environ]
        for name in pinned_now:
            os.environ[name] = PORTABLE_KERNELS[name]
        late = []
        if "OPENBLAS_CORETYPE" in pinned_now and "numpy" in sys.modules:
            late.append("numpy's OpenBLAS")
        torch = sys.modules.get("torch")
        if "ATEN_CPU_CAPABILITY" in pinned_now and torch is not None and hasattr(torch, "backends"):
            if torch.backends.cpu.get_cpu_capability() != "AVX2":  # a tensor operation already ran
                late.append("torch (a tensor operation already ran)")
        if late:
            warnings.warn(f"{' and '.join(late)} loaded before lstmscope: the CPU kernels stay this machine's own, "
                          "so numbers may differ from the pipeline's in the last bits; import lstmscope first",
                          RuntimeWarning, stacklevel=3)
    return {name: os.environ[name] for name in PORTABLE_KERNELS if name in os.environ}

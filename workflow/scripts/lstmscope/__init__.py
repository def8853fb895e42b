"""lstmscope: open up LSTM language models (activations, neurons, clusters).

The library is pure: no Snakemake import, no global configuration. Each pipeline
stage is one small adapter script in ``workflow/scripts`` that calls one function
of this package.

Importing it pins the CPU kernels of torch and OpenBLAS to their AVX2 ones and MKL to its
``COMPATIBLE`` branch (see :mod:`lstmscope.kernels`), so that the same config and seed give
the same numbers on any x86-64 machine with AVX2, Intel's or AMD's; import it before numpy
or torch for that to hold.
"""
from .kernels import pin_portable_kernels

pin_portable_kernels()

__version__ = "0.1.0"

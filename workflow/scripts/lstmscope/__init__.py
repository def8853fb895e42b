"""lstmscope: open up LSTM language models (activations, neurons, clusters).

The library is pure: no Snakemake import, no global configuration. Each pipeline
stage is one small adapter script in ``workflow/scripts`` that calls one function
of this package.
"""

__version__ = "0.1.0"

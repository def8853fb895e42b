"""The order of models in tables of several models: by dropout, then replicate as a number.

``config.model_name`` names a model ``d<dropout>_r<replicate>``; the names' text order puts ``d0.0_r10`` before
``d0.0_r2``, so tables sort the model column with :func:`models_in_order` instead.
"""
from __future__ import annotations

import pandas as pd


def model_name_order(name: str) -> tuple[str, int]:
    """A model name's place among names of one dropout: by replicate as a number (``d0.0_r2`` before
    ``d0.0_r10``); a name not of the form ``…_r<n>`` comes before those of its stem, as it is."""
    stem, sep, replicate = str(name).rpartition("_r")
    return (stem, int(replicate)) if sep and replicate.isdigit() else (str(name), -1)


def models_in_order(column: pd.Series) -> pd.Series:
    """``DataFrame.sort_values(key=...)``: the ``model`` column in :func:`model_name_order`, the others as
    they are, so that sorting by dropout, then model lists the models by dropout, then replicate."""
    if column.name != "model":
        return column
    names = column.astype(str)
    return pd.Series(pd.Categorical(names, categories=sorted(set(names), key=model_name_order), ordered=True),
                     index=column.index)

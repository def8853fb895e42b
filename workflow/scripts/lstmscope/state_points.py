"""The points behind a t-SNE map (``cluster.space: pca``): the states of its tokens after the embedding's PCA.

Apart from :mod:`lstmscope.cluster`, so that the stages that only read cluster tables do not import the
embedding's code (nor rerun when it changes).
"""
from __future__ import annotations

import os

import numpy as np

from .embedding import project_pca, read_states
from .points import read_embedding


def pca_points(activations: str | os.PathLike, embedding: str | os.PathLike, layer: int, state: str,
               max_tokens: int | None, pca_components: int, seed: int) -> np.ndarray:
    """The points t-SNE started from for the map ``embedding``, one row per token in text order: ``state`` of
    ``layer`` in ``activations`` for its first ``max_tokens`` tokens, after the embedding's PCA (same
    components and seed). The map must hold exactly those tokens."""
    table = read_embedding(embedding).sort_values("position", kind="stable")
    positions, words, states = read_states(activations, layer, state, max_tokens)
    if (len(positions) != len(table) or not np.array_equal(table["position"].to_numpy(), positions)
            or table["word"].astype(str).tolist() != words):
        raise ValueError(f"{embedding}: its {len(table)} tokens are not the first {len(positions)} of {activations} "
                         "(embedding.max_tokens or the text changed since the map was made: rerun embed_tsne)")
    return project_pca(states, pca_components, seed)

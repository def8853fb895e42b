"""Representation of a word: every token of a text is a point in one layer's state space.

``read_states`` takes one layer's hidden (``h``) or cell (``c``) state for the first
tokens of an activations file; ``embed_tsne`` projects those points to two
dimensions (PCA, then openTSNE with a fixed seed); the result is a table with one
row per token: ``position, word, x, y`` (written and read by ``points``).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from openTSNE import TSNE
from sklearn.decomposition import PCA

from .activations_file import ActivationsError, open_activations, state_dataset
from .points import embedding_table, write_embedding

log = logging.getLogger(__name__)

INITIALIZATIONS = ("pca", "random")


@dataclass(frozen=True)
class TSNESettings:
    """Everything the projection depends on; the rule passes each value as a param."""

    pca_components: int = 50
    perplexity: float = 30.0
    n_iter: int = 500
    early_exaggeration_iter: int = 250
    seed: int = 42
    #: where t-SNE starts: ``pca``, the points' first two principal components (openTSNE's default: the layout is
    #: set by the data, the seed only jitters the start and seeds the approximate neighbour search), or ``random``,
    #: positions drawn with the seed (another draw of the layout)
    initialization: str = "pca"

    def __post_init__(self) -> None:
        if self.initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization={self.initialization!r}: choose one of {', '.join(INITIALIZATIONS)}")
        if int(self.pca_components) < 2:
            raise ValueError(f"pca_components={self.pca_components}: must be at least 2")
        if not float(self.perplexity) > 0:
            raise ValueError(f"perplexity={self.perplexity}: must be positive")
        if int(self.n_iter) < 1:
            raise ValueError(f"n_iter={self.n_iter}: must be at least 1")
        if int(self.early_exaggeration_iter) < 0:
            raise ValueError(f"early_exaggeration_iter={self.early_exaggeration_iter}: must be >= 0")


def read_states(path: str | os.PathLike, layer: int, state: str, max_tokens: int | None = None
                ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Positions, words and the ``state`` (``h`` or ``c``) of ``layer`` for the first ``max_tokens`` tokens.

    Only the rows needed are read (datasets are chunked by rows). Returns
    ``(positions int64 (T,), words, states float32 (T, N))``.
    """
    with open_activations(path) as fh:  # checks the format and that every dataset is complete
        data = state_dataset(fh, layer, state)
        name = data.name.lstrip("/")
        n = data.shape[0] if max_tokens is None else min(int(max_tokens), data.shape[0])
        if n < 2:
            raise ActivationsError(f"{path}: {n} tokens; at least 2 are needed for an embedding")
        states = np.asarray(data[:n], dtype=np.float32)
        words = list(fh["tokens/words"].asstr()[:n])
    if not np.isfinite(states).all():
        raise ActivationsError(f"{path}: {name} holds non-finite values in its first {n} rows")
    return np.arange(n, dtype=np.int64), words, states


def project_pca(states: np.ndarray, components: int, seed: int) -> np.ndarray:
    """PCA to ``components`` dimensions (fewer when the data has fewer); float64 for openTSNE.

    The solver and the components' signs are fixed here rather than left to scikit-learn, whose ``auto`` solver
    depends on the shape and on its version (1.5 changed it) and whose sign convention changed in 1.5 too: a
    t-SNE map is chaotic in its input, so a difference in the last bits of these coordinates draws another map.
    ``covariance_eigh`` (what ``auto`` picks for the default run's states) eigen-decomposes the neurons'
    covariance matrix; each component is signed so that its largest loading is positive. ``seed`` is kept for
    the callers; this solver draws no random numbers.
    """
    k = min(int(components), states.shape[0], states.shape[1])
    if k >= states.shape[1]:
        # Nothing to reduce: PCA would only rotate the data; t-SNE needs no rotation.
        return np.ascontiguousarray(states, dtype=np.float64)
    pca = PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed)
    reduced = pca.fit_transform(states.astype(np.float64))
    loadings = pca.components_
    flip = loadings[np.arange(k), np.abs(loadings).argmax(axis=1)] < 0
    reduced[:, flip] *= -1
    return np.ascontiguousarray(reduced)


def tsne(points: np.ndarray, settings: TSNESettings, n_jobs: int = 1, progress_every: int = 50) -> np.ndarray:
    """openTSNE with ``settings``; deterministic for a fixed seed and ``n_jobs``.

    ``n_iter`` is openTSNE's: iterations after the ``early_exaggeration_iter``
    iterations of early exaggeration. Progress (KL divergence) is logged every
    ``progress_every`` iterations.
    """
    n = points.shape[0]
    if 3 * float(settings.perplexity) > n - 1:
        raise ValueError(f"perplexity {settings.perplexity} is too large for {n} points: "
                         f"it must be at most (points - 1) / 3 = {(n - 1) / 3:.1f}")
    start = time.monotonic()
    # Callbacks come every ``progress_every`` iterations of each phase, counted from 1 in each.
    early = int(settings.early_exaggeration_iter) >= max(1, int(progress_every))
    phase = {"name": "early exaggeration" if early else "main", "last": 0}

    def report(iteration: int, error: float, embedding: np.ndarray) -> bool:
        if iteration <= phase["last"]:  # openTSNE counts each phase from 1
            phase["name"] = "main"
        phase["last"] = iteration
        log.info("t-SNE %s iteration %d: KL divergence %.4f (%.1f s)", phase["name"], iteration, error,
                 time.monotonic() - start)
        return False

    model = TSNE(
        n_components=2,
        perplexity=float(settings.perplexity),
        n_iter=int(settings.n_iter),
        early_exaggeration_iter=int(settings.early_exaggeration_iter),
        random_state=int(settings.seed),
        initialization=settings.initialization,
        n_jobs=int(n_jobs),
        callbacks=report if progress_every else None,
        callbacks_every_iters=max(1, int(progress_every)),
        verbose=False,
    )
    return np.asarray(model.fit(points), dtype=np.float64)


def embed_states(states: np.ndarray, settings: TSNESettings, n_jobs: int = 1,
                 progress_every: int = 50) -> np.ndarray:
    """PCA to ``settings.pca_components`` dimensions, then t-SNE to 2-D: (T, 2) float64."""
    t0 = time.monotonic()
    reduced = project_pca(states, settings.pca_components, settings.seed)
    log.info("PCA %d -> %d dimensions for %d points in %.1f s",
             states.shape[1], reduced.shape[1], states.shape[0], time.monotonic() - t0)
    return tsne(reduced, settings, n_jobs=n_jobs, progress_every=progress_every)


def fft_backend() -> str:
    """The FFT openTSNE was built with (it interpolates the gradient with FFTs from 10 000 points on): ``FFTW``
    (conda-forge and distribution packages) or ``numpy`` (PyPI's wheels); the two round differently."""
    try:  # a module of openTSNE's own, whose compiled file names the source it was built from
        from openTSNE._matrix_mul import matrix_mul

        with open(matrix_mul.__file__, "rb") as fh:
            binary = fh.read()
    except (ImportError, AttributeError, OSError):
        return "unknown"
    return "FFTW" if b"matrix_mul_fftw3" in binary else "numpy" if b"matrix_mul_numpy" in binary else "unknown"


def software() -> str:
    """What the map depends on beyond the settings: the versions of the libraries that compute it, and openTSNE's
    FFT (maps are the same only where these are)."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str, module: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # no installed metadata (a source tree on the path): the module says
            return str(getattr(importlib.import_module(module), "__version__", "unknown"))

    names = (("openTSNE", "openTSNE"), ("scikit-learn", "sklearn"), ("numpy", "numpy"), ("scipy", "scipy"))
    return ", ".join(f"{n} {of(n, m)}" for n, m in names) + f", openTSNE's FFT {fft_backend()}"


def embed_tsne(activations: str | os.PathLike, output: str | os.PathLike, layer: int, state: str,
               max_tokens: int | None, settings: TSNESettings, n_jobs: int = 1) -> pd.DataFrame:
    """Stage embed_tsne: one layer's states of one text -> ``position, word, x, y`` CSV."""
    positions, words, states = read_states(activations, layer, state, max_tokens)
    log.info("%s: layer %s state %s, %d tokens x %d neurons", activations, layer, state, *states.shape)
    if not np.ptp(states, axis=0).any():
        raise ActivationsError(f"{activations}: layer{layer}/{state} holds one value per unit over all {len(states)} "
                               "tokens embedded (a layer that does not change): every token is the same point, no map")
    log.info("computed with %s", software())
    try:
        xy = embed_states(states, settings, n_jobs=n_jobs)
    except ValueError as exc:  # name the input: a setting that does not fit this text
        raise ValueError(f"{activations} layer {layer} state {state}: {exc}") from exc
    if not np.isfinite(xy).all():
        raise ValueError(f"{activations} layer {layer} state {state}: t-SNE gave {int((~np.isfinite(xy)).any(axis=1).sum())} "
                         "of the points a coordinate that is not a number; no map written")
    table = embedding_table(positions, words, xy)
    write_embedding(table, output)
    log.info("wrote %s (%d points)", output, len(table))
    return table

"""How alike the models' layers are: linear CKA between every two models' states of one layer and state on the same
text (Kornblith et al., 2019, *Similarity of Neural Network Representations Revisited*).

For two models' (T, N) state matrices X and Y over the same T tokens, each column centred on its mean,

    CKA(X, Y) = ||XᵀY||²_F / (||XᵀX||_F · ||YᵀY||_F)

is 1 when one layer's states are the other's up to a rotation (or any orthogonal map) and one scale factor, and near 0
when they share no linear structure; it does not depend on which neuron is which, so two models whose neurons play the
same parts under different numbers compare as alike. The sums are accumulated over blocks of tokens read from the
activations files (memory grows with the number of models and neurons, not with the text), in float64: one Gram matrix
of all models' neurons side by side per layer and state. The same matrices give every neuron's correlation with every
other model's neurons: its best match there, its partner in the one-to-one pairing of the two models' neurons, and
the chance level of each in that model's states turned by a random rotation (:func:`similarity_tables`; read back and
drawn by :mod:`.neuron_matches`).
"""
from __future__ import annotations

import contextlib
import os
import warnings
import zlib
from typing import Sequence

import numpy as np
import pandas as pd

from .activations_file import ActivationsError, open_activations, read_neurons, state_dataset
from .order import models_in_order

COLUMNS = ["text", "tokens", "layer", "state", "model_a", "dropout_a", "model_b", "dropout_b", "cka"]
#: A layer whose states vary less than this (the root of their mean variance over the neurons, over the text) has no
#: CKA with any model: its Gram matrix is rounding noise (a layer of dead h, say, whose output gates never open).
STILL = 1e-6
MATCH_COLUMNS = ["text", "tokens", "layer", "state", "model", "dropout", "neuron", "other_model", "other_dropout",
                 "match", "r", "r_rotated", "partner", "r_partner", "r_partner_rotated"]
#: Seed of the random rotations of the matches' chance level (with the model's name, the layer and the state).
ROTATION_SEED = 20190506
#: Rotations whose mean is a neuron's chance level: one rotation's best |r| for a neuron varied with sd 0.04 over 20
#: rotations (default run, layer 2 h), about the size of the effect; the mean of 5 by about 0.02.
ROTATIONS = 5
#: Values held per block of tokens (all models' neurons side by side), about 64 MB in float64.
BLOCK_VALUES = 1 << 23


def _check_alike(files: Sequence, paths: Sequence[str | os.PathLike]) -> None:
    """The files are one text's (the same tokens), of different models, with the same layers; else one line."""
    first, name = files[0], str(paths[0])
    ids = first["tokens/ids"][:]
    seen = {str(first.attrs["model"]): name}
    for f, path in zip(files[1:], paths[1:]):
        if str(f.attrs["text"]) != str(first.attrs["text"]) or int(f.attrs["n_tokens"]) != len(ids):
            raise ActivationsError(f"{path} holds text {f.attrs['text']} ({int(f.attrs['n_tokens'])} tokens), {name} "
                                   f"text {first.attrs['text']} ({len(ids)} tokens): give the files of one text")
        if not np.array_equal(f["tokens/ids"][:], ids):
            raise ActivationsError(f"{path} and {name} both hold text {first.attrs['text']} but not the same tokens "
                                   "(another offset, split or vocabulary): give the files of one text")
        if int(f.attrs["layers"]) != int(first.attrs["layers"]):
            raise ActivationsError(f"{path} has {int(f.attrs['layers'])} layers, {name} {int(first.attrs['layers'])}: "
                                   "give models of one architecture")
        model = str(f.attrs["model"])
        if model in seen:
            raise ActivationsError(f"{path} and {seen[model]} are both of model {model}: give one file per model")
        seen[model] = str(path)


class _Gram:
    """The Gram matrix of every model's ``layer{layer}/{state}`` side by side, accumulated over blocks of tokens in
    place (BLAS's syrk: its upper triangle only, so that no second matrix of its size is ever made), with each
    model's slice of its rows and columns; :meth:`block` centres one pair's part."""

    def __init__(self, files: Sequence, layer: int, state: str, rows: int | None = None):
        from scipy.linalg.blas import dsyrk

        datasets = [state_dataset(f, layer, state) for f in files]
        edges = np.cumsum([0, *(d.shape[1] for d in datasets)])
        self.parts = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        total, self.tokens = int(edges[-1]), datasets[0].shape[0]
        rows = rows or max(1, BLOCK_VALUES // total)
        self.upper = np.zeros((total, total), order="F")
        sums = np.zeros(total)
        shift = None  # the first block's means: sums of values near 0, so that centring at the end loses no digits
        block = np.empty((min(rows, self.tokens), total))
        for start in range(0, self.tokens, rows):
            stop = min(self.tokens, start + rows)
            z = block[:stop - start]
            for f, d, part in zip(files, datasets, self.parts):  # (read_neurons: a value no state is, named)
                z[:, part] = read_neurons(f, layer, state, np.arange(d.shape[1]), start, stop)
            if shift is None:
                shift = z.mean(axis=0)
            z -= shift
            dsyrk(1.0, z.T, beta=1.0, c=self.upper, trans=0, lower=0, overwrite_c=1)  # upper += zᵀz
            sums += z.sum(axis=0)
        self.mean = sums / self.tokens

    def block(self, a: int, b: int) -> np.ndarray:
        """Model ``a``'s and model ``b``'s part (``a`` <= ``b``) of the centred Gram matrix: XᵀY of their centred
        states."""
        pa, pb = self.parts[a], self.parts[b]
        part = self.upper[pa, pb]
        if a == b:  # the diagonal block holds its upper triangle only
            part = np.triu(part) + np.triu(part, 1).T
        return part - self.tokens * np.outer(self.mean[pa], self.mean[pb])


def cka_table(paths: Sequence[str | os.PathLike], rows: int | None = None) -> pd.DataFrame:
    """Linear CKA between every two of the models whose activations files ``paths`` holds (one text), for each
    layer and state: one row per ordered pair (a model with itself too, 1), models by dropout, then replicate. A
    layer whose states hardly vary (:data:`STILL`) has NaN with every model. ``rows``: tokens per block (default:
    about :data:`BLOCK_VALUES` values)."""
    return similarity_tables(paths, rows, matches=False)[0]


def similarity_tables(paths: Sequence[str | os.PathLike], rows: int | None = None, matches: bool = True
                      ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The CKA table of :func:`cka_table` and, with ``matches``, the table of neuron matches (None without: one row
    per model, layer, state, neuron and other model, :data:`MATCH_COLUMNS`), from one pass over the files: both are
    read off the same Gram matrices."""
    if not paths:
        raise ActivationsError("no activations files given")
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_activations(p)) for p in paths]
        _check_alike(files, paths)
        models = pd.DataFrame({"model": [str(f.attrs["model"]) for f in files],
                               "dropout": [float(f.attrs["dropout"]) for f in files], "file": range(len(files))})
        order = models.sort_values(["dropout", "model"], key=models_in_order, kind="stable")["file"].tolist()
        files, paths = [files[i] for i in order], [paths[i] for i in order]
        text, T, m = str(files[0].attrs["text"]), int(files[0].attrs["n_tokens"]), len(files)
        names = [str(f.attrs["model"]) for f in files]
        dropouts = [float(f.attrs["dropout"]) for f in files]
        out, found = [], []
        for layer in range(1, int(files[0].attrs["layers"]) + 1):
            for state in ("h", "c"):
                gram = _Gram(files, layer, state, rows)
                own = [gram.block(a, a) for a in range(m)]
                norms = [np.linalg.norm(g) for g in own]
                still = [np.sqrt(max(np.trace(g), 0.0) / T / g.shape[0]) < STILL for g in own]
                cka = np.full((m, m), np.nan)
                for a in range(m):
                    for b in range(a, m):
                        if not (still[a] or still[b]):
                            cross = own[a] if a == b else gram.block(a, b)
                            cka[a, b] = cka[b, a] = np.sum(cross ** 2) / (norms[a] * norms[b])
                for (a, b), value in np.ndenumerate(cka):
                    out.append((text, T, layer, state, names[a], dropouts[a], names[b], dropouts[b], float(value)))
                if matches:
                    found.extend(_matches(gram, own, layer, state, names, dropouts, text))
    table = pd.DataFrame(out, columns=COLUMNS)
    if not matches:
        return table, None
    return table, pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=MATCH_COLUMNS)


def rotations(model: str, layer: int, state: str, n: int) -> list[np.ndarray]:
    """The :data:`ROTATIONS` random orthogonal n x n matrices that turn model ``model``'s moving neurons of one layer
    and state for the chance level of a match: seeded by the model's name (not by its place among the models given, so
    that adding a model changes no other pair's chance level), the layer and the state. Uniform over the rotations
    (Haar): the Q of a Gaussian matrix's QR, its columns' signs set by R's diagonal (Mezzadri 2007, as
    ``scipy.stats.ortho_group`` draws them; importing scipy.stats took a second, more than the default run's
    matches)."""
    rng = np.random.default_rng([ROTATION_SEED, zlib.crc32(model.encode()), layer, "hc".index(state)])
    out = []
    for _ in range(ROTATIONS):
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        out.append(q * np.where(np.diag(r) < 0, -1.0, 1.0))
    return out


def one_to_one(scores: np.ndarray) -> np.ndarray:
    """The one-to-one pairing of rows and columns with the largest sum of ``scores`` (Li et al.'s bipartite matching,
    by scipy's ``linear_sum_assignment``): each row's column, -1 for a row left unpaired (one with no finite score,
    or one more than there are columns). Rows and columns of NaN (a neuron that hardly varies) take no part."""
    from scipy.optimize import linear_sum_assignment

    finite = np.isfinite(scores)
    rows, cols = np.flatnonzero(finite.any(axis=1)), np.flatnonzero(finite.any(axis=0))
    paired = np.full(scores.shape[0], -1)
    if len(rows) and len(cols):
        sub = np.nan_to_num(scores[np.ix_(rows, cols)], nan=0.0)
        i, j = linear_sum_assignment(sub, maximize=True)
        paired[rows[i]] = cols[j]
    return paired


def _matches(gram: _Gram, own: list[np.ndarray], layer: int, state: str, names: list[str], dropouts: list[float],
             text: str) -> list[pd.DataFrame]:
    """For every model's neurons of one layer and state, in every other model: the best-matching neuron (largest
    |r|), r, and the chance level: the mean over :func:`rotations` of the best |r| among the other model's moving
    neurons turned by the rotation (the neurons that hardly vary left out, as they are of the matches); and the same
    for the one-to-one pairing of the two models' neurons (:func:`one_to_one` of |r|: each neuron's partner, r with
    it, and the mean over the rotations of the |r| of its partner in the pairing with the turned neurons). In the
    order of the models, then of the other models."""
    T = gram.tokens
    variance = [np.clip(np.diag(g), 0.0, None) / T for g in own]
    moving = [np.sqrt(v) >= STILL for v in variance]  # a neuron that hardly varies has no r with any neuron
    found, pairs = {}, {}
    for b, own_b in enumerate(own):
        kept = np.flatnonzero(moving[b])
        turns, turned_variance = [], []
        if len(kept):
            turns = rotations(names[b], layer, state, len(kept))
            part = own_b[np.ix_(kept, kept)]
            for q in turns:  # the variance of each turned direction, from the covariances: diag(qᵀ C q)
                v = np.clip(np.einsum("ij,ij->j", part @ q, q), 0.0, None) / T
                turned_variance.append(np.where(v > 1e-12 * variance[b][kept].max(), v, np.nan))  # rounding: none
        for a in range(len(own)):
            if a == b:
                continue
            cross = (gram.block(a, b) if a < b else gram.block(b, a).T) / T  # covariances: a's neurons x b's
            none = ~moving[a] | (len(kept) == 0)
            still = np.where(none, np.nan, 1.0)[:, None]  # a's rows that take no part
            with np.errstate(invalid="ignore", divide="ignore"):
                r = cross / np.sqrt(np.outer(variance[a], variance[b]))
                best_turned, partner_turned = [], []
                for q, v in zip(turns, turned_variance):
                    turned = np.abs(cross[:, kept] @ q / np.sqrt(np.outer(variance[a], v))) * still
                    best_turned.append(np.fmax.reduce(turned, axis=1))  # (fmax: NaN, a still neuron, left out)
                    paired = one_to_one(turned)
                    partner_turned.append(np.where(paired >= 0, turned[np.arange(len(r)), paired], np.nan))
            chance = np.mean(best_turned, axis=0) if best_turned else np.full(len(r), np.nan)
            match = np.where(moving[b][None, :], np.abs(r), -1.0).argmax(axis=1)
            best = r[np.arange(len(r)), match]
            if (b, a) not in pairs:  # one pairing per two models, read from either side
                pairs[a, b] = one_to_one(np.abs(r) * still * np.where(moving[b], 1.0, np.nan)[None, :])
                pairs[b, a] = np.full(len(moving[b]), -1)
                pairs[b, a][pairs[a, b][pairs[a, b] >= 0]] = np.flatnonzero(pairs[a, b] >= 0)
            partner = pairs[a, b]
            with warnings.catch_warnings():  # a neuron unpaired in every rotation: NaN, no warning
                warnings.simplefilter("ignore", RuntimeWarning)
                partner_chance = (np.nanmean(partner_turned, axis=0) if partner_turned
                                  else np.full(len(r), np.nan))
            has_partner = partner >= 0
            found[a, b] = pd.DataFrame({
                "text": text, "tokens": T, "layer": layer, "state": state, "model": names[a], "dropout": dropouts[a],
                "neuron": np.arange(len(r)), "other_model": names[b], "other_dropout": dropouts[b],
                "match": pd.array(np.where(none, None, match), dtype="Int64"),
                "r": np.where(none, np.nan, np.clip(best, -1.0, 1.0)),
                "r_rotated": np.where(none, np.nan, np.clip(chance, 0.0, 1.0)),
                "partner": pd.array(np.where(has_partner, partner, None), dtype="Int64"),
                "r_partner": np.where(has_partner, np.clip(r[np.arange(len(r)), np.maximum(partner, 0)], -1.0, 1.0),
                                      np.nan),
                "r_partner_rotated": np.where(has_partner, np.clip(partner_chance, 0.0, 1.0), np.nan)})
    return [found[pair] for pair in sorted(found)]


def similarity_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, title: str,
                      dpi: int = 150) -> None:
    """A panel per layer (rows) and state (columns): the models' CKA as a matrix, models in the table's order, on
    one colour scale for every panel, from the lowest CKA of the figure rounded down to a tenth (at most 0.9) to 1
    (CKA of trained models lies far above 0, where a scale from 0 left them all one shade); each cell's value written
    in it where there are at most 12 models; thin white lines between models of different dropouts where a dropout
    has several; a layer without CKA (it hardly varies) greyed, and its panel's title says so."""
    import matplotlib.pyplot as plt

    from .figures import STATE_NAMES, figure_title, save_figure

    layers = sorted(table["layer"].unique())
    models = list(dict.fromkeys(table["model_a"]))
    m = len(models)
    side = max(2.6, 0.42 * m + 1.2)
    fig, axes = plt.subplots(len(layers), 2, figsize=(2 * side + 1.4, side * len(layers)), squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    finite = table["cka"].dropna()
    low = min(0.9, np.floor(10 * finite.min()) / 10) if len(finite) else 0.0
    dropouts = table.drop_duplicates("model_a")["dropout_a"].to_numpy()
    borders = [i + 0.5 for i in range(m - 1) if dropouts[i] != dropouts[i + 1]] if len(set(dropouts)) < m else []
    image = None
    for i, layer in enumerate(layers):
        for k, state in enumerate(("h", "c")):
            ax = axes[i, k]
            s = table[(table["layer"] == layer) & (table["state"] == state)]
            matrix = s.pivot(index="model_a", columns="model_b", values="cka").loc[models, models].to_numpy()
            image = ax.imshow(matrix, vmin=low, vmax=1, cmap=cmap)
            for edge in borders:
                ax.axhline(edge, color="white", lw=1.5)
                ax.axvline(edge, color="white", lw=1.5)
            ax.set_xticks(range(m), models, rotation=90, fontsize=7)
            ax.set_yticks(range(m), models, fontsize=7)
            if m <= 12:
                for (a, b), v in np.ndenumerate(matrix):
                    if np.isfinite(v):
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if v > low + 0.6 * (1 - low) else "white")
            still = [models[j] for j in np.flatnonzero(np.isnan(np.diag(matrix)))]  # no CKA even with itself
            note = f"\nno CKA: {', '.join(still)} hardly vary" if still else ""
            ax.set_title(f"layer {layer}, {STATE_NAMES[state]}{note}", fontsize=10)
    fig.suptitle(figure_title(fig, title, 11), fontsize=11)
    fig.tight_layout()
    bar = fig.colorbar(image, ax=axes, shrink=0.6 if len(layers) > 1 else 0.9, pad=0.03)
    bar.set_label(f"linear CKA (1: alike up to a rotation and a scale; scale from {low:.1f})")
    save_figure(fig, png, svg, dpi=dpi)


def model_similarity(paths: Sequence[str | os.PathLike], csv_path: str | os.PathLike,
                     matches_path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The CKA table of the activations files ``paths`` (one text, one per model), written to ``csv_path``; with
    ``matches_path``, the neuron matches too (:func:`similarity_tables`), written there."""
    from .atomic import write_table

    table, matches = similarity_tables(paths, matches=matches_path is not None)
    whole = {c: [str(float(d)) for d in table[c]] for c in ("dropout_a", "dropout_b")}  # 0.0 as d0.0_r0 names it
    write_table(table.assign(**whole), csv_path, "%.6g")
    if matches_path is not None:
        write_table(matches.assign(other_dropout=[str(float(d)) for d in matches["other_dropout"]]), matches_path,
                    "%.6g")
    return table


def refuse_two_dropouts(table: pd.DataFrame, columns: Sequence[tuple[str, str]], path: str | os.PathLike,
                        damaged: str) -> list[str]:
    """One dropout per model wherever a table names it (``columns``: pairs of a model's and its dropout's column),
    else a ValueError naming the file and the model; returns the models named, sorted."""
    named = pd.concat([table[list(pair)].set_axis(["model", "dropout"], axis=1) for pair in columns])
    dropouts = named.astype({"model": str}).groupby("model")["dropout"].nunique()
    if (dropouts > 1).any():
        raise ValueError(f"{path}: model {dropouts[dropouts > 1].index[0]} has more than one dropout: {damaged}")
    return sorted(dropouts.index)


def read_similarity(path: str | os.PathLike) -> pd.DataFrame:
    """A table of :func:`model_similarity` read back; a ValueError names the file and the line or pair that is
    wrong: a missing or non-numeric value, another text in a row, a CKA outside [0, 1], a pair of models missing
    from a layer and state or given twice."""
    from .checked_files import read_table, number_columns, refuse_mixed, refuse_rows, refuse_unnamed

    table = read_table(path, COLUMNS, "similarity table", ValueError)
    number_columns(table, ["tokens", "layer", "dropout_a", "dropout_b"], path, ValueError, whole=["tokens", "layer"])
    number_columns(table, ["cka"], path, ValueError, may_be_empty=["cka"])
    refuse_unnamed(table, ["text", "state", "model_a", "model_b"], path, ValueError)
    refuse_mixed(table, ["text", "tokens"], path, ValueError, "a similarity table is one text's")
    refuse_rows(table, ~table["state"].isin(["h", "c"]).to_numpy(), "state", "h or c", path, ValueError)
    refuse_rows(table, ((table["cka"] < 0) | (table["cka"] > 1 + 1e-9)).to_numpy(), "cka", "numbers from 0 to 1 "
                "(or nothing, for a layer that does not vary)", path, ValueError)
    refuse_rows(table, (table["layer"] < 1).to_numpy(), "layer", "layers from 1", path, ValueError)
    models = list(dict.fromkeys(table["model_a"].astype(str)))
    damaged = "the table is damaged; run model_similarity again"
    refuse_two_dropouts(table, [("model_a", "dropout_a"), ("model_b", "dropout_b")], path, damaged)
    layers = int(table["layer"].max())
    for layer in range(1, layers + 1):
        for state in ("h", "c"):
            rows = table[(table["layer"] == layer) & (table["state"] == state)]
            pairs = list(zip(rows["model_a"].astype(str), rows["model_b"].astype(str)))
            wanted = {(a, b) for a in models for b in models}
            if len(pairs) != len(set(pairs)) or set(pairs) != wanted:
                missing = sorted(wanted - set(pairs))
                what = f"lacks models {missing[0][0]} and {missing[0][1]}" if missing else "repeats a pair of models"
                raise ValueError(f"{path}: layer {layer} {state} {what}: {damaged}")
            cka = rows.pivot(index="model_a", columns="model_b", values="cka").loc[models, models].to_numpy()
            diagonal = np.diag(cka)
            undefined = np.isnan(diagonal)[:, None] | np.isnan(diagonal)[None, :]  # a still layer: empty row, column
            if not (np.array_equal(np.isnan(cka), undefined) and np.allclose(cka, cka.T, rtol=1e-5, equal_nan=True)
                    and np.allclose(diagonal[~np.isnan(diagonal)], 1.0, rtol=1e-5)):
                raise ValueError(f"{path}: layer {layer} {state} is not a CKA matrix (each model 1 with itself, the "
                                 f"same both ways, empty only for a model whose layer does not vary): {damaged}")
    return table


def similarity_figure_of(csv_path: str | os.PathLike, png: str | os.PathLike, svg: str | os.PathLike,
                         dpi: int = 150) -> pd.DataFrame:
    """The figure of a table of :func:`model_similarity` (read back with :func:`read_similarity`)."""
    table = read_similarity(csv_path)
    models, tokens = table["model_a"].nunique(), int(table["tokens"].iloc[0])
    count = f"{tokens:,}".replace(",", " ")
    similarity_figure(table, png, svg, dpi=dpi,
                      title=f"How alike the models' layers are: linear CKA of their states, text "
                            f"{table['text'].iloc[0]} ({count} tokens, {models} model{'s' * (models != 1)})")
    return table

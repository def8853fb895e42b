"""Do the map's clusters survive another t-SNE map?

A t-SNE map is one draw: started elsewhere, t-SNE places the same tokens otherwise, and the clusters cut from the
map, their contiguity along the text included, may change with it. The maps of other seeds
(``embedding.stability_seeds``) start from positions drawn with their seed (``embedding.stability_initialization:
random``), or from the reference map's PCA start (``pca``, where the seed only jitters the start and seeds the
approximate neighbour search). :func:`seed_stability` clusters each with the same linkage and cut as the reference
map (the one every other table and figure shows, ``embedding.seed``) and measures, per seed, the adjusted Rand index
of its clusters against the reference map's and the contiguity of its clusters (both baselines of
:func:`lstmscope.cluster_measures.partition_measures`, with the same shuffles, and how far along the text they reach
beyond the words' own, :func:`lstmscope.cluster_measures.reach_of`). With ``cluster.space: pca`` the
clusters of the states do not depend on the map at all; there the maps' own clusters (``map_cluster``, cut at the
states' number of clusters) are compared, and ``state_ari`` gives each map's agreement with the states' clusters
(the reference row's is ``map_ari`` of the measures).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .cluster import MAP_CLUSTER, SPACES, cluster_points, read_clusters
from .cluster_measures import MAY_BE_EMPTY, _thesis_order, partition_measures, reach_of
from .points import check_same_tokens, read_embedding

#: the columns of partition_measures kept per seed
MEASURES = ("clusters", "largest_share", "contiguity_ratio", "contiguity_z", "word_contiguity_ratio",
            "word_contiguity_z")


def seed_stability(reference_files: Mapping[tuple[int, str, str], str | os.PathLike],
                   seed_files: Mapping[tuple[int, str, int], str | os.PathLike], model: str, text: str,
                   reference_seed: int, n_clusters: int | None = None,
                   distance_threshold: Mapping[str, float | None] | None = None, space: str = "map",
                   shuffles: int = 100, shuffle_seed: int = 0, ward_max_points: int = 60000,
                   initialization: str = "random", reference_initialization: str = "pca") -> pd.DataFrame:
    """One row per layer x state x linkage x map seed, the reference seed's first.

    ``reference_files`` maps (layer, state, linkage) to the cluster table of the reference map; ``seed_files``
    maps (layer, state, seed) to the embedding table of the same states made with another t-SNE seed. Every
    other map is cut as the reference map was: at ``n_clusters``, at ``distance_threshold[linkage]`` (map units), or
    with ``space="pca"`` at the number of clusters of the reference's ``map_cluster``. ``ari`` is the adjusted Rand
    index of a map's clusters against the reference map's (1 = the same partition, about 0 = no more alike than
    chance); the contiguity columns are :func:`partition_measures`' of its clusters, and ``reach`` the lags in a
    row from 1 at which they lie beyond each word's shuffles (:func:`lstmscope.cluster_measures.reach_of`), with
    ``shuffles`` and ``shuffle_seed`` the same for every map. ``start`` says where t-SNE started the map:
    ``reference_initialization`` for the reference, ``initialization`` (``embedding.stability_initialization``) for
    the others.
    """
    from sklearn.metrics import adjusted_rand_score

    if space not in SPACES:
        raise ValueError(f"cluster space {space!r}: choose one of {', '.join(SPACES)}")
    seeds = sorted({int(seed) for _, _, seed in seed_files})
    if int(reference_seed) in seeds:
        raise ValueError(f"the reference seed {reference_seed} is among the other seeds {seeds}")
    rows = []
    maps: dict[tuple[int, str, int], pd.DataFrame] = {}  # each map read once for both linkages
    for (layer, state, linkage), path in sorted(reference_files.items(), key=_thesis_order):
        table = read_clusters(path)
        if (MAP_CLUSTER in table.columns) != (space == "pca"):
            raise ValueError(f"{path}: {'holds' if space == 'map' else 'lacks'} the column {MAP_CLUSTER}, so it "
                             f"is not a table of clusters of the {'map' if space == 'map' else 'PCA space'}")
        reference = table[MAP_CLUSTER if space == "pca" else "cluster"].to_numpy()
        if space == "pca":  # the maps' clusters as many as the states' (cluster_tokens' cut of map_cluster)
            cut, threshold = int(reference.max()), None
        else:
            cut, threshold = n_clusters, (distance_threshold or {}).get(linkage)
        key = {"model": model, "text": text, "layer": int(layer), "state": state, "linkage": linkage, "space": space}

        def row(seed: int, labels: np.ndarray) -> dict:
            measured = partition_measures(table.assign(cluster=labels), shuffles=shuffles, seed=shuffle_seed)
            out = {**key, "seed": int(seed), "reference": seed == int(reference_seed),
                   "start": reference_initialization if seed == int(reference_seed) else initialization,
                   "ari": float(adjusted_rand_score(reference, labels)),
                   **{name: measured[name] for name in MEASURES},
                   # the table is in text order (read_clusters), as the labels are
                   "reach": reach_of(labels, table["word"].astype(str).to_numpy(), shuffles=shuffles,
                                     seed=shuffle_seed)}
            if space == "pca":
                out["state_ari"] = float(adjusted_rand_score(table["cluster"], labels))
            return out

        rows.append(row(int(reference_seed), reference))
        for seed in seeds:
            if (layer, state, seed) not in seed_files:
                raise ValueError(f"no map of layer {layer} {state} with seed {seed} among the inputs")
            source = seed_files[(layer, state, seed)]
            if (layer, state, seed) not in maps:
                other = read_embedding(source).sort_values("position", kind="stable").reset_index(drop=True)
                check_same_tokens(table, other, source, path)
                maps[(layer, state, seed)] = other
            xy = maps[(layer, state, seed)][["x", "y"]].to_numpy()
            try:
                labels = cluster_points(xy, linkage, cut if threshold is None else None, threshold,
                                        ward_max_points) + 1
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from exc
            rows.append(row(seed, labels))
    return pd.DataFrame(rows)


STABILITY_COLUMNS = ["model", "text", "layer", "state", "linkage", "space", "seed", "reference", "ari", "clusters",
                     "contiguity_ratio", "contiguity_z", "word_contiguity_ratio", "word_contiguity_z"]
STABILITY_NUMBERS = ["layer", "seed", "ari", "clusters", "contiguity_ratio", "word_contiguity_ratio", "contiguity_z",
                     "word_contiguity_z"]


def read_seed_stability(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The tables of :func:`seed_stability` (one per model and text), one under the other: each must hold the
    columns the stability figure reads, filled, and for every layer, state and linkage one row of the reference map
    and at least one of another; else a ValueError names the file, and the column and line or the view."""
    from .checked_files import read_tables, refuse_rows

    if not paths:
        raise ValueError("no seed stability tables given")
    tables = []
    for path in paths:
        table = read_tables([path], STABILITY_COLUMNS, STABILITY_NUMBERS, "seed stability table", ValueError,
                            whole=("layer", "seed", "clusters"), may_be_empty=MAY_BE_EMPTY)
        flag = table["reference"].astype(str)
        refuse_rows(table, ~flag.isin(["True", "False"]).to_numpy(), "reference", "True or False", path, ValueError)
        table["reference"] = flag == "True"
        for (layer, state, linkage), view in table.groupby(["layer", "state", "linkage"], sort=True):
            maps = int(view["reference"].sum()), int((~view["reference"]).sum())
            if maps[0] != 1 or maps[1] == 0:
                raise ValueError(f"{path}: layer {layer} {state} {linkage} has {maps[0]} rows of the reference map "
                                 f"and {maps[1]} of other maps; a seed stability table has one and at least one")
        tables.append(table)
    return pd.concat(tables, ignore_index=True)

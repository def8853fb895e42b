"""Agglomerative clustering of the tokens: single and ward linkage, of the 2-D t-SNE map
(``cluster.space: map``, the thesis's) or of the PCA-reduced states the map was made
from (``pca``: are the map's clusters in the representation itself?).

Single linkage is computed exactly from the Euclidean minimum spanning tree (EMST)
of the points: every EMST edge is an edge of the Delaunay triangulation, so the
EMST of n points in the plane is the minimum spanning tree of the O(n) Delaunay
edges (scipy's ``Delaunay`` + ``minimum_spanning_tree``), O(n log n) in all. Where
Qhull leaves points out of the triangulation (clumps closer than its rounding), the
tree is computed by Prim's method on all pairs instead: still exact, O(n^2) time.
Cutting the k - 1 longest EMST edges gives the k single-linkage clusters;
cutting every edge of length >= t gives the clusters of distance threshold t
(scikit-learn's convention: clusters at or above the threshold are not merged).

Ward linkage uses scikit-learn, which needs the n(n-1)/2 pairwise distances in
memory; above a configured number of points it refuses with a message naming the
limit. Single linkage of points in more than two dimensions also uses scikit-learn
(Prim's method over all pairs: O(n^2 d) time, O(n) memory).

Cluster numbers are canonical: 0 is the largest cluster, ties broken by the
first text position of a member, so the same partition always gets the same numbers.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import Delaunay, QhullError

from .atomic import atomic_path
from .points import read_embedding

log = logging.getLogger(__name__)

LINKAGES = ("single", "ward")
#: What is clustered: the 2-D t-SNE map, or the states after the PCA step that precedes t-SNE.
SPACES = ("map", "pca")
CLUSTER_COLUMNS = ("position", "word", "x", "y", "cluster")
#: In a table of clusters of the PCA space: the same linkage's clusters of the map, for comparison.
MAP_CLUSTER = "map_cluster"


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber a partition: 0 = largest cluster, ties by the first index of a member."""
    labels = np.asarray(labels)
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # by size descending, then first member
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inverse.ravel()]


def _check_points(points: np.ndarray, planar: bool = True) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or (points.shape[1] != 2 if planar else points.shape[1] < 1):
        raise ValueError(f"points have shape {points.shape}; expected (n, {2 if planar else 'dimensions'})")
    if not np.isfinite(points).all():
        raise ValueError("points hold non-finite coordinates")
    return points


def _check_cut(n: int, n_clusters: int | None, distance_threshold: float | None) -> None:
    if (n_clusters is None) == (distance_threshold is None):
        raise ValueError("set exactly one of n_clusters and distance_threshold")
    if n_clusters is not None and not 1 <= int(n_clusters) <= n:
        raise ValueError(f"n_clusters={n_clusters}: must be between 1 and the number of points ({n})")
    if distance_threshold is not None and not float(distance_threshold) > 0:
        raise ValueError(f"distance_threshold={distance_threshold}: must be positive")


def _delaunay_graph(points: np.ndarray) -> csr_matrix | None:
    """The Delaunay triangulation of distinct points as a symmetric sparse graph of edge lengths; None when
    Qhull leaves points out of it (nearly coincident with another, within its rounding)."""
    n = len(points)
    tri = Delaunay(points)
    indptr, indices = tri.vertex_neighbor_vertices
    if (np.diff(indptr) == 0).any():
        return None
    rows = np.repeat(np.arange(n), np.diff(indptr))
    # Each edge is listed from both ends; keep one direction (half the edges for the MST to sort).
    one = rows < indices
    rows, cols = rows[one], indices[one]
    half_indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    w = np.hypot(*(points[rows] - points[cols]).T)
    return csr_matrix((w, cols, half_indptr), shape=(n, n))


def _prim_mst(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of the EMST by Prim's method on the complete graph: exact whatever the rounding, O(n^2) time,
    O(n) memory (4.6 s for 18 000 points on a 2-core CPU)."""
    n = len(points)
    x, y = points[:, 0].copy(), points[:, 1].copy()
    best = np.full(n, np.inf)       # distance of each point outside the tree to the tree
    parent = np.zeros(n, dtype=np.int64)
    outside = np.ones(n, dtype=bool)
    i, j, w = np.empty(n - 1, np.int64), np.empty(n - 1, np.int64), np.empty(n - 1)
    d = np.empty(n)
    current = 0
    for k in range(n - 1):
        outside[current] = False
        best[current] = np.inf
        np.hypot(x - x[current], y - y[current], out=d)
        closer = (d < best) & outside
        best[closer] = d[closer]
        parent[closer] = current
        current = int(np.argmin(best))
        i[k], j[k], w[k] = parent[current], current, best[current]
    return i, j, w


def _collinear_edges(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the EMST of points that lie on one line: neighbours along the line."""
    centred = points - points.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    if len(sv) > 1 and sv[1] > 1e-9 * max(sv[0], 1e-300):
        raise ValueError("points are neither triangulable nor collinear")
    order = np.argsort(centred @ vt[0], kind="stable")
    return order[:-1], order[1:]


def _distinct(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct points and, for every point, the index of its distinct copy."""
    order = np.lexsort((points[:, 1], points[:, 0]))
    s = points[order]
    new = np.ones(len(points), dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    if new.all():
        return points, np.arange(len(points))
    group = np.cumsum(new) - 1
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = group
    return s[new], inverse


def euclidean_mst(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, length)`` of a Euclidean minimum spanning tree of distinct 2-D points.

    n - 1 edges. Exact: the minimum spanning tree of the Delaunay edges; when Qhull leaves points out of
    the triangulation (clumps of points closer than its rounding), Prim's method on all pairs.
    """
    points = _check_points(points)
    n = len(points)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    try:
        if n < 3:
            raise QhullError("fewer than 3 points")
        graph = _delaunay_graph(points)
    except QhullError:  # fewer than three points, or all on one line
        i, j = _collinear_edges(points)
        graph = coo_matrix((np.hypot(*(points[i] - points[j]).T), (i, j)), shape=(n, n)).tocsr()
    if graph is None:
        log.warning("%d points: Qhull left nearly coincident points out of the triangulation; the spanning "
                    "tree is computed by Prim's method on all pairs instead (exact, O(n^2) time)", n)
        i, j, w = _prim_mst(points)
        if (w == 0).any():
            raise ValueError("euclidean_mst needs distinct points")
        return i, j, w
    if (graph.data == 0).any():
        raise ValueError("euclidean_mst needs distinct points")
    mst = minimum_spanning_tree(graph, overwrite=True).tocoo()
    if mst.nnz != n - 1:
        raise RuntimeError(f"spanning tree has {mst.nnz} edges for {n} points (graph not connected)")
    return mst.row.astype(np.int64), mst.col.astype(np.int64), mst.data.astype(np.float64)


def single_linkage(points: np.ndarray, n_clusters: int | None = None,
                   distance_threshold: float | None = None) -> np.ndarray:
    """Single-linkage cluster labels (canonical numbering) of 2-D points, exact, O(n log n).

    The same partition as scikit-learn's ``AgglomerativeClustering(linkage="single")``
    for points whose pairwise distances have no ties at the cut.
    """
    points = _check_points(points)
    n = len(points)
    _check_cut(n, n_clusters, distance_threshold)
    # Coincident points are at distance 0 and merge first: cluster the distinct points.
    distinct, inverse = _distinct(points)
    m = len(distinct)
    if n_clusters is not None and int(n_clusters) > m:
        raise ValueError(f"n_clusters={n_clusters}: only {m} distinct points")
    i, j, w = euclidean_mst(distinct)
    order = np.argsort(w, kind="stable")
    if n_clusters is not None:
        keep = order[: m - int(n_clusters)]  # drop the n_clusters - 1 longest edges
    else:
        keep = np.flatnonzero(w < float(distance_threshold))
    forest = coo_matrix((np.ones(len(keep)), (i[keep], j[keep])), shape=(m, m))
    _, labels = connected_components(forest, directed=False)
    return canonical_labels(labels[inverse])


def single_linkage_any(points: np.ndarray, n_clusters: int | None = None,
                       distance_threshold: float | None = None) -> np.ndarray:
    """Single-linkage cluster labels (canonical numbering) of points in any number of dimensions.

    scikit-learn's minimum spanning tree over all pairs: exact, O(n^2 d) time, O(n) memory. For 2-D
    points :func:`single_linkage` gives the same partition in O(n log n).
    """
    points = _check_points(points, planar=False)
    _check_cut(len(points), n_clusters, distance_threshold)
    return _scikit_learn_labels(points, "single", n_clusters, distance_threshold)


def _scikit_learn_labels(points: np.ndarray, linkage: str, n_clusters: int | None,
                         distance_threshold: float | None) -> np.ndarray:
    """scikit-learn's agglomerative clustering of checked points, canonically numbered."""
    from sklearn.cluster import AgglomerativeClustering

    if len(points) == 1:
        return np.zeros(1, dtype=np.int64)
    if n_clusters is not None:  # coincident points merge first (at 0): more clusters would split copies of one point
        distinct = len(np.unique(points, axis=0))
        if int(n_clusters) > distinct:
            raise ValueError(f"n_clusters={n_clusters}: only {distinct} distinct points")
    model = AgglomerativeClustering(
        n_clusters=None if n_clusters is None else int(n_clusters),
        distance_threshold=None if distance_threshold is None else float(distance_threshold),
        linkage=linkage,
        compute_full_tree=True if distance_threshold is not None else "auto",
    )
    return canonical_labels(model.fit_predict(points))


def ward_memory_bytes(n: int) -> int:
    """Memory ward linkage needs for n points: the condensed distance matrix (float64) and scipy's working
    copy of it (measured: 551 MB more at 8 000 points, 1161 MB at 12 000)."""
    return 2 * 8 * n * (n - 1) // 2


def ward_linkage(points: np.ndarray, n_clusters: int | None = None, distance_threshold: float | None = None,
                 max_points: int = 60000) -> np.ndarray:
    """Ward cluster labels (canonical numbering) of points in any number of dimensions via scikit-learn;
    refuses above ``max_points``."""
    points = _check_points(points, planar=False)
    n = len(points)
    _check_cut(n, n_clusters, distance_threshold)
    if n > int(max_points):
        raise ValueError(
            f"ward linkage of {n} points needs about {ward_memory_bytes(n) / 1e9:.1f} GB for pairwise distances (two copies); "
            f"the limit is {int(max_points)} points (cluster.ward_max_points): raise it or embed fewer tokens "
            f"(embedding.max_tokens)")
    return _scikit_learn_labels(points, "ward", n_clusters, distance_threshold)


def cluster_points(points: np.ndarray, linkage: str, n_clusters: int | None = None,
                   distance_threshold: float | None = None, ward_max_points: int = 60000) -> np.ndarray:
    """Cluster labels (0 = largest) of (n, d) points; single linkage of 2-D points by the exact EMST."""
    if linkage == "single":
        if np.ndim(points) == 2 and np.shape(points)[1] != 2:
            return single_linkage_any(points, n_clusters, distance_threshold)
        return single_linkage(points, n_clusters, distance_threshold)
    if linkage == "ward":
        return ward_linkage(points, n_clusters, distance_threshold, ward_max_points)
    raise ValueError(f"linkage {linkage!r}: choose one of {', '.join(LINKAGES)}")


def read_clusters(path: str | os.PathLike) -> pd.DataFrame:
    """A cluster table (``position, word, x, y, cluster``), in text order."""
    table = read_embedding(path, required=CLUSTER_COLUMNS)
    return table.sort_values("position", kind="stable").reset_index(drop=True)


def keyed_tables(paths: list[str], keys: list[list], kinds: tuple = (int, str, str),
                 what: str = "cluster tables") -> dict[tuple, str]:
    """Pair a rule's table inputs with their keys, passed as a param: (layer, state, linkage) of cluster tables by
    default; ``kinds`` types each part of a key (a map of another seed: (int, str, int), layer, state and seed)."""
    if len(paths) != len(keys):
        raise ValueError(f"{len(paths)} {what} but {len(keys)} keys")
    return {tuple(kind(part) for kind, part in zip(kinds, k)): str(p) for k, p in zip(keys, paths)}


def cluster_tokens(embedding: str | os.PathLike, output: str | os.PathLike, linkage: str,
                   n_clusters: int | None = None, distance_threshold: float | None = None,
                   ward_max_points: int = 60000, space: str = "map", points: np.ndarray | None = None
                   ) -> pd.DataFrame:
    """Stage cluster_tokens: the embedding table plus a ``cluster`` column (1 = largest cluster).

    ``space="map"`` clusters the 2-D map (the thesis's); ``"pca"`` clusters ``points``, one row per token of
    the table in text order (:func:`lstmscope.state_points.pca_points`: the states t-SNE started from), keeps
    each token at its map position, and adds the same linkage's clusters of the map as ``map_cluster`` for
    comparison, as many as the PCA space got. ``distance_threshold`` is in the units of the space clustered
    (the map's clusters are then cut at the number the threshold gave: the two spaces' distances differ).
    """
    if space not in SPACES:
        raise ValueError(f"cluster space {space!r}: choose one of {', '.join(SPACES)}")
    table = read_embedding(embedding).sort_values("position", kind="stable").reset_index(drop=True)
    xy = table[["x", "y"]].to_numpy()
    map_labels = None
    try:
        if space == "pca":
            if points is None or np.ndim(points) != 2 or len(points) != len(table):
                raise ValueError(f"clustering the PCA space needs one point per token ({len(table)}), got "
                                 f"{'none' if points is None else np.shape(points)}")
        else:
            points = xy
        t0 = time.monotonic()
        labels = cluster_points(points, linkage, n_clusters, distance_threshold, ward_max_points)
        seconds = time.monotonic() - t0
        if space == "pca":
            map_labels = cluster_points(xy, linkage, int(labels.max()) + 1, None, ward_max_points)
    except ValueError as exc:  # name the input whose size or coordinates the settings do not fit
        raise ValueError(f"{embedding}: {exc}") from exc
    table = table.loc[:, ["position", "word", "x", "y"]].copy()
    table["cluster"] = labels + 1
    sizes = np.bincount(labels)
    log.info("%s linkage of the %s (%d dimensions): %d points -> %d clusters in %.2f s; largest %s; cut at %s",
             linkage, "t-SNE map" if space == "map" else "PCA space", np.shape(points)[1], len(table), len(sizes),
             seconds, sizes[:5].tolist(),
             f"{n_clusters} clusters" if distance_threshold is None else f"distance {float(distance_threshold)}")
    if map_labels is not None:  # their agreement (map_ari) is cluster_measures' to compute
        table[MAP_CLUSTER] = map_labels + 1
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    return table

"""Stage cluster_tokens: exact single linkage from the Euclidean MST, ward with a memory limit."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from conftest import REPO, skip_or_fail
from embedding_data import write_activations
from lstmscope.cluster import (canonical_labels, cluster_points, cluster_tokens, euclidean_mst, read_clusters,
                               single_linkage, single_linkage_any, ward_linkage)
from lstmscope.embedding import TSNESettings, embed_tsne
from lstmscope.points import read_embedding
from lstmscope.state_points import pca_points


def mixture(n: int, seed: int = 0) -> np.ndarray:
    """Points like a t-SNE map: blobs of different size and spread, continuous coordinates."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-60, 60, size=(25, 2))
    which = rng.choice(25, size=n, p=rng.dirichlet(np.ones(25)))
    return centres[which] + rng.normal(size=(n, 2)) * rng.uniform(0.5, 4, size=25)[which, None]


def assert_no_tied_distances(points: np.ndarray) -> None:
    d = np.sort(pdist(points))
    assert d[0] > 0 and np.all(np.diff(d) > 0), "test points must have distinct pairwise distances"


@pytest.fixture(scope="module")
def tsne_points(tmp_path_factory):
    """A real embedding: t-SNE of a real LSTM's layer-2 cell states on 500 WikiText-2 tokens."""
    base = tmp_path_factory.mktemp("cluster")
    h5 = write_activations(base / "test.h5", n_tokens=500)
    out = base / "layer2_c.csv"
    embed_tsne(h5, out, 2, "c", None, TSNESettings(pca_components=10, perplexity=15, n_iter=100,
                                                     early_exaggeration_iter=50, seed=3))
    return out


@pytest.mark.parametrize("n_clusters", [2, 12, 60])
def test_single_linkage_equals_scikit_learn_on_3000_points(n_clusters):
    points = mixture(3000, seed=n_clusters)
    assert_no_tied_distances(points)
    ours = single_linkage(points, n_clusters=n_clusters)
    theirs = AgglomerativeClustering(n_clusters=n_clusters, linkage="single").fit_predict(points)
    assert adjusted_rand_score(ours, theirs) == 1.0
    np.testing.assert_array_equal(ours, canonical_labels(theirs))


@pytest.mark.parametrize("threshold", [0.8, 2.5])
def test_single_linkage_distance_threshold_equals_scikit_learn(threshold):
    points = mixture(2000, seed=11)
    ours = single_linkage(points, distance_threshold=threshold)
    model = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="single")
    theirs = model.fit_predict(points)
    assert ours.max() + 1 == model.n_clusters_ > 1
    np.testing.assert_array_equal(ours, canonical_labels(theirs))


def test_a_distance_equal_to_the_threshold_is_not_merged():
    """scikit-learn's convention: clusters at or above ``distance_threshold`` stay apart. Integer points, so
    that the gaps (1, 2 and 3) are exact and fall on the cut."""
    points = np.array([[0, 0], [1, 0], [2, 0], [4, 0], [5, 0], [0, 3]], dtype=float)
    for threshold, expected in ((2.0, [0, 0, 0, 1, 1, 2]), (3.0, [0, 0, 0, 0, 0, 1]), (3.5, [0] * 6)):
        theirs = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                         linkage="single").fit_predict(points)
        assert canonical_labels(theirs).tolist() == expected
        assert single_linkage(points, distance_threshold=threshold).tolist() == expected


def test_single_linkage_equals_scikit_learn_on_a_real_embedding(tsne_points):
    points = read_embedding(tsne_points)[["x", "y"]].to_numpy()
    assert_no_tied_distances(points)
    for k in (5, 12):
        theirs = AgglomerativeClustering(n_clusters=k, linkage="single").fit_predict(points)
        np.testing.assert_array_equal(single_linkage(points, n_clusters=k), canonical_labels(theirs))


def test_euclidean_mst_has_the_weight_of_the_dense_minimum_spanning_tree():
    points = mixture(800, seed=5)
    i, j, w = euclidean_mst(points)
    assert len(w) == 799
    np.testing.assert_allclose(w, np.hypot(*(points[i] - points[j]).T))
    dense = minimum_spanning_tree(squareform(pdist(points)))
    assert w.sum() == pytest.approx(dense.sum(), rel=1e-12)


def test_a_clump_closer_than_qhulls_rounding_still_gets_the_exact_tree(caplog):
    """Qhull leaves points of a clump with spread 2e-5 in a map of spread 20 out of the triangulation (38 of
    these 400); the tree and every cut are still exact."""
    rng = np.random.default_rng(1)
    clump = np.array([30.0, -20.0]) + rng.normal(size=(100, 2)) * 2e-5
    points = np.unique(np.round(np.vstack([rng.normal(size=(300, 2)) * 20, clump]), 6), axis=0)
    i, j, w = euclidean_mst(points)
    assert "Qhull left nearly coincident points out" in caplog.text
    assert len(w) == len(points) - 1
    np.testing.assert_allclose(w, np.hypot(*(points[i] - points[j]).T))
    assert w.sum() == pytest.approx(minimum_spanning_tree(squareform(pdist(points))).sum(), rel=1e-12)
    with pytest.raises(ValueError, match="euclidean_mst needs distinct points"):  # copies: left out too
        euclidean_mst(np.vstack([points, points[:3]]))
    for threshold in (2.5e-6, 1.05e-5, 2.9e-5):  # cuts inside the clump, off the 1e-6 grid (no tie at the cut)
        theirs = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                         linkage="single").fit_predict(points)
        ours = single_linkage(points, distance_threshold=threshold)
        assert ours.max() >= 300 and adjusted_rand_score(ours, theirs) == 1.0


def test_degenerate_inputs_collinear_duplicates_and_tiny():
    # all on one line: the clusters are split at the two largest gaps (sizes 3, 2, 3; equal sizes
    # numbered by first position)
    x = np.array([0.0, 1.0, 1.5, 10.0, 10.2, 30.0, 30.5, 31.5])
    line = np.column_stack([x, 2 * x + 1])
    assert single_linkage(line, n_clusters=3).tolist() == [0, 0, 0, 2, 2, 1, 1, 1]
    # coincident points are at distance 0 and always share a cluster
    points = mixture(300, seed=2)
    doubled = np.vstack([points, points[:50]])
    labels = single_linkage(doubled, n_clusters=8)
    np.testing.assert_array_equal(labels[300:], labels[:50])
    theirs = AgglomerativeClustering(n_clusters=8, linkage="single").fit_predict(points)
    assert adjusted_rand_score(labels[:300], theirs) == 1.0  # numbers differ: the copies add to sizes
    assert single_linkage(np.array([[0.0, 0.0], [1.0, 1.0]]), n_clusters=2).tolist() == [0, 1]
    assert single_linkage(np.array([[0.0, 0.0]]), n_clusters=1).tolist() == [0]


@pytest.mark.parametrize("linkage,dims", [("ward", 2), ("ward", 5), ("single", 2), ("single", 5)])
def test_more_clusters_than_distinct_points_is_refused_by_every_linkage(linkage, dims):
    """Copies of one point merge first (at distance 0), so more clusters than distinct points would split copies of
    a point between clusters: ward and single linkage in more than 2 dimensions did (scikit-learn's merge order
    choosing which), where single linkage of 2-D points refused. Every branch refuses now, and takes as many."""
    distinct = np.random.default_rng(4).standard_normal((3, dims))
    points = np.repeat(distinct, 3, axis=0)
    with pytest.raises(ValueError, match="n_clusters=4: only 3 distinct points"):
        cluster_points(points, linkage, n_clusters=4)
    labels = cluster_points(points, linkage, n_clusters=3)
    assert [len(set(labels[i:i + 3])) for i in (0, 3, 6)] == [1, 1, 1] and len(set(labels)) == 3


def test_canonical_numbering_is_by_size_then_first_position():
    # 3 and 9 have three members each; 3 appears first
    assert canonical_labels(np.array([7, 3, 3, 9, 9, 9, 7, 3, 5])).tolist() == [2, 0, 0, 1, 1, 1, 2, 0, 3]
    # equal sizes: the cluster that appears first in the text gets the lower number
    assert canonical_labels(np.array(["b", "a", "b", "a"])).tolist() == [0, 1, 0, 1]


def test_ward_labels_are_scikit_learns_renumbered():
    points = mixture(1500, seed=4)
    ours = ward_linkage(points, n_clusters=12)
    theirs = AgglomerativeClustering(n_clusters=12, linkage="ward").fit_predict(points)
    assert adjusted_rand_score(ours, theirs) == 1.0
    sizes = np.bincount(ours)
    assert np.all(np.diff(sizes) <= 0)
    # the same partition as SciPy's own ward (another implementation), numbered by size, then by first appearance
    from scipy.cluster.hierarchy import fcluster, linkage

    np.testing.assert_array_equal(ours, canonical_labels(fcluster(linkage(points, "ward"), 12, "maxclust")))


def test_ward_refuses_more_points_than_the_limit_naming_it():
    points = mixture(1001, seed=1)
    # the distances (1001 * 1000 / 2 of 8 bytes) and scipy's working copy of them: 8.0 MB
    with pytest.raises(ValueError, match=r"ward linkage of 1001 points needs about 0\.0 GB for pairwise distances "
                                         r"\(two copies\); the limit is 1000 points \(cluster\.ward_max_points\)"):
        ward_linkage(points, n_clusters=5, max_points=1000)
    assert ward_linkage(points[:1000], n_clusters=5, max_points=1000).max() == 4


def test_a_table_with_a_token_twice_is_refused_naming_it(tsne_points, tmp_path):
    """A position twice (a table joined or edited by hand) was clustered and counted twice without a word."""
    table = pd.read_csv(tsne_points, keep_default_na=False, dtype={"word": str})
    doubled = tmp_path / "doubled.csv"
    pd.concat([table, table.iloc[[17, 40]]]).to_csv(doubled, index=False)
    position = table["position"].iloc[17]
    with pytest.raises(ValueError, match=rf"doubled.csv: position {position} is in the table more than once \(2 "):
        read_embedding(doubled)
    assert len(read_embedding(tsne_points)) == len(table)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="reads Linux's peak resident size")
def test_ward_memory_counts_the_distances_twice_as_measured():
    """scipy's linkage works on a copy of the n(n-1)/2 distances: ward's peak memory, measured in a process of its
    own (its peak resident size, VmHWM, reset before and read after), is what ward_memory_bytes says (two copies of
    8-byte distances). (Not getrusage's ru_maxrss: a process started from this one begins with this one's peak.)"""
    code = textwrap.dedent("""
        import lstmscope
        import numpy as np
        from lstmscope.cluster import ward_linkage, ward_memory_bytes

        def status(key):
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

        ward_linkage(np.random.default_rng(1).normal(size=(50, 2)), n_clusters=5)  # the imports, before measuring
        points = np.random.default_rng(0).normal(size=(4000, 2))
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # the peak resident size starts again from the present one
        except OSError as exc:
            raise SystemExit(f"cannot reset the peak: {exc}")
        before = status("VmRSS")
        ward_linkage(points, n_clusters=5)
        print((status("VmHWM") - before) / ward_memory_bytes(4000))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "workflow" / "scripts"),
                                                                    os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    if "cannot reset the peak" in r.stderr:  # a sandbox that shows the file but refuses the write
        skip_or_fail(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert 0.9 < float(r.stdout) < 1.2, r.stdout  # 1.002 on 2026-12-05


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.iloc[:0], r"no tokens \(the header alone\)"),
    (lambda t: t.assign(x=t.x.astype(object).where(t.index != 5, "-")), r"column x must hold finite numbers; line 7 "
                                                                        r"has '-'"),
    (lambda t: t.assign(y=t.y.astype(object).where(t.index != 0, "")), r"column y must hold finite numbers; line 2 "
                                                                       r"has ''"),
    (lambda t: t.assign(position=t.position.astype(object).where(t.index != 3, "3.5")),
     r"column position must hold whole numbers from 0; line 5 has 3\.5"),
    (lambda t: t.assign(cluster=t.cluster.where(t.index != 9, 0)), r"column cluster must hold whole numbers from 1; "
                                                                   r"line 11 has 0"),
])
def test_a_damaged_embedding_or_cluster_table_is_refused_naming_file_column_and_line(tsne_points, tmp_path, edit,
                                                                                     message):
    """A table cut short or edited by hand gave pandas' or Python's own errors naming no file, or none at all
    (contiguity measured on labels read as text)."""
    table = read_embedding(tsne_points).assign(cluster=1)
    damaged = tmp_path / "damaged.csv"
    edit(table).to_csv(damaged, index=False)
    with pytest.raises(ValueError, match=r"damaged\.csv: " + message + "$"):
        read_clusters(damaged)
    clean = tmp_path / "clean.csv"
    table.to_csv(clean, index=False)
    read = read_clusters(clean)
    assert read["cluster"].dtype == np.int64 and read["x"].dtype == np.float64 and len(read) == len(table)


def test_bad_cuts_are_refused():
    points = mixture(50)
    with pytest.raises(ValueError, match="exactly one of n_clusters and distance_threshold"):
        single_linkage(points)
    with pytest.raises(ValueError, match="n_clusters=51"):
        single_linkage(points, n_clusters=51)
    with pytest.raises(ValueError, match=r"shape \(50, 3\)"):
        single_linkage(np.zeros((50, 3)), n_clusters=2)
    bad = points.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="points hold non-finite coordinates"):
        single_linkage(bad, n_clusters=2)


def test_cluster_tokens_writes_the_table_with_clusters_numbered_from_one(tsne_points, tmp_path):
    for linkage in ("single", "ward"):
        out = tmp_path / f"{linkage}.csv"
        cluster_tokens(tsne_points, out, linkage, n_clusters=7)
        table = read_clusters(out)
        embedding = read_embedding(tsne_points)
        assert list(table.columns) == ["position", "word", "x", "y", "cluster"]
        pd.testing.assert_frame_equal(table[["position", "word", "x", "y"]], embedding)
        sizes = table["cluster"].value_counts().sort_index()
        assert sizes.index.tolist() == list(range(1, 8))
        assert sizes.is_monotonic_decreasing
    with pytest.raises(ValueError, match=r"layer2_c\.csv: n_clusters=501: must be between 1 and the number of "
                                         r"points \(500\)"):
        cluster_tokens(tsne_points, tmp_path / "x.csv", "single", n_clusters=501)
    with pytest.raises(ValueError, match="linkage 'average'"):
        cluster_tokens(tsne_points, tmp_path / "x.csv", "average", n_clusters=3)
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------------------ cluster.space: pca
@pytest.mark.parametrize("n_clusters", [2, 9, 40])
def test_single_linkage_in_many_dimensions_equals_scipys(n_clusters):
    """Points in 6 dimensions (cluster.space: pca clusters 50): scikit-learn's tree against scipy's."""
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(n_clusters)
    points = rng.normal(size=(800, 6)) + rng.integers(0, 3, size=(800, 1)) * 4.0
    ours = single_linkage_any(points, n_clusters=n_clusters)
    theirs = fcluster(linkage(points, "single"), n_clusters, criterion="maxclust")
    assert adjusted_rand_score(ours, theirs) == 1.0
    assert ours.max() == n_clusters - 1 and np.all(np.diff(np.bincount(ours)) <= 0)
    # a distance threshold: merges at or above it are not made (scipy's "distance" keeps those below)
    cut = float(linkage(points, "single")[-30, 2])  # a merge's own height: the boundary itself
    assert adjusted_rand_score(single_linkage_any(points, distance_threshold=cut),
                               fcluster(linkage(points, "single"), np.nextafter(cut, 0), criterion="distance")) == 1.0
    # cluster_points sends 2-D points to the exact EMST and others here
    assert np.array_equal(cluster_points(points, "single", n_clusters), ours)
    planar = mixture(300, seed=n_clusters)
    assert np.array_equal(cluster_points(planar, "single", n_clusters), single_linkage(planar, n_clusters))


@pytest.fixture(scope="module")
def pca_case(tmp_path_factory):
    """A real activations file (24 units per layer) and a t-SNE map of its first 300 tokens' layer-1 h."""
    base = tmp_path_factory.mktemp("pca")
    h5 = write_activations(base / "test.h5", n_tokens=400)
    out = base / "layer1_h.csv"
    embed_tsne(h5, out, 1, "h", 300, TSNESettings(pca_components=8, perplexity=10, n_iter=60,
                                                   early_exaggeration_iter=30, seed=5))
    return h5, out


def test_clusters_of_the_pca_space_are_scipys_ward_of_the_states_whatever_the_map(pca_case, tmp_path):
    """cluster.space: pca clusters the embedding's PCA of the states (8 components, its seed): the partition is
    scipy's ward of those points, and moving the map's points changes only map_cluster."""
    import h5py
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.decomposition import PCA

    h5, embedding = pca_case
    points = pca_points(h5, embedding, 1, "h", max_tokens=300, pca_components=8, seed=5)
    table = cluster_tokens(embedding, tmp_path / "a.csv", "ward", n_clusters=6, space="pca", points=points)
    assert list(table.columns) == ["position", "word", "x", "y", "cluster", "map_cluster"]
    with h5py.File(h5, "r") as fh:
        states = fh["layer1/h"][:300].astype(np.float64)
    points = PCA(n_components=8, random_state=5).fit_transform(states)
    expected = fcluster(linkage(points, "ward"), 6, criterion="maxclust")
    assert adjusted_rand_score(table["cluster"], expected) == 1.0
    map_only = cluster_tokens(embedding, tmp_path / "m.csv", "ward", n_clusters=6)
    assert table["map_cluster"].tolist() == map_only["cluster"].tolist()
    assert adjusted_rand_score(table["cluster"], table["map_cluster"]) < 0.99  # not the map's partition

    # another map of the same tokens (coordinates reversed and rotated): same clusters, other map clusters
    moved = read_embedding(embedding)
    moved[["x", "y"]] = moved[["y", "x"]].to_numpy()[::-1]
    moved.to_csv(tmp_path / "moved.csv", index=False)
    assert np.array_equal(pca_points(h5, tmp_path / "moved.csv", 1, "h", 300, 8, 5), points)
    again = cluster_tokens(tmp_path / "moved.csv", tmp_path / "b.csv", "ward", n_clusters=6, space="pca",
                           points=points)
    assert again["cluster"].tolist() == table["cluster"].tolist()
    assert again["map_cluster"].tolist() != table["map_cluster"].tolist()
    assert read_clusters(tmp_path / "b.csv")["cluster"].tolist() == table["cluster"].tolist()


def test_a_distance_threshold_cuts_the_pca_space_and_the_map_gets_as_many_clusters(pca_case, tmp_path):
    """The threshold is in the PCA space's units; the map's clusters (for map_ari) are cut at the number it gave,
    not at the same number of map units (the map's distances are of another size)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    h5, embedding = pca_case
    points = pca_points(h5, embedding, 1, "h", max_tokens=300, pca_components=8, seed=5)
    heights = linkage(points, "ward")[:, 2]
    cut = float((heights[-5] + heights[-6]) / 2)  # between two merges: 6 clusters stay apart
    table = cluster_tokens(embedding, tmp_path / "t.csv", "ward", distance_threshold=cut, space="pca", points=points)
    assert table["cluster"].max() == 6
    assert adjusted_rand_score(table["cluster"], fcluster(linkage(points, "ward"), cut, criterion="distance")) == 1.0
    map_six = cluster_tokens(embedding, tmp_path / "m.csv", "ward", n_clusters=6)
    assert table["map_cluster"].tolist() == map_six["cluster"].tolist()


def test_clustering_the_pca_space_refuses_a_map_of_other_tokens(pca_case, tmp_path):
    h5, embedding = pca_case
    with pytest.raises(ValueError, match=r"layer1_h\.csv: its 300 tokens are not the first 250 of .*test\.h5 "
                                         r"\(embedding\.max_tokens or the text changed .*rerun embed_tsne\)"):
        pca_points(h5, embedding, 1, "h", max_tokens=250, pca_components=8, seed=5)
    with pytest.raises(ValueError, match=r"test\.h5: layer 3 does not exist; the file has layers 1\.\.2"):
        pca_points(h5, embedding, 3, "h", max_tokens=300, pca_components=8, seed=5)
    with pytest.raises(ValueError, match="cluster space 'tsne': choose one of map, pca"):
        cluster_tokens(embedding, tmp_path / "x.csv", "single", n_clusters=4, space="tsne")
    with pytest.raises(ValueError, match=r"layer1_h\.csv: clustering the PCA space needs one point per token "
                                         r"\(300\), got \(299, 8\)"):
        points = pca_points(h5, embedding, 1, "h", max_tokens=300, pca_components=8, seed=5)
        cluster_tokens(embedding, tmp_path / "x.csv", "single", n_clusters=4, space="pca", points=points[1:])
    assert not (tmp_path / "x.csv").exists()

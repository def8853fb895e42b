"""The clusters across t-SNE seeds (embedding.stability_seeds): real maps of other seeds, each clustered as the
reference map was, compared with the pipeline's own clustering and measures of those maps."""
from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from embedding_data import _CACHE, real_activations, real_cluster_tables
from lstmscope.cluster import cluster_tokens, keyed_tables, read_clusters
from lstmscope.cluster_measures import cluster_measures, lag_measures, lag_reach
from lstmscope.cluster_stability import seed_stability
from lstmscope.embedding import TSNESettings, embed_tsne

REFERENCE_SEED = 5  # real_cluster_tables' t-SNE seed
SETTINGS = dict(pca_components=10, perplexity=15, n_iter=100, early_exaggeration_iter=50)  # as real_cluster_tables'
MEASURED = ["clusters", "largest_share", "contiguity_ratio", "contiguity_z", "word_contiguity_ratio",
            "word_contiguity_z"]


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """Maps of the same states with seeds 6 and 9 (layer 2 only: h and c)."""
    base = tmp_path_factory.mktemp("seeds")
    h5 = real_activations()
    out = {}
    for seed in (6, 9):
        for state in ("h", "c"):
            out[(2, state, seed)] = base / f"layer2_{state}_seed{seed}.csv"
            embed_tsne(h5, out[(2, state, seed)], 2, state, None, TSNESettings(**SETTINGS, seed=seed))
    return out


def layer2(tables):
    return {k: v for k, v in tables.items() if k[0] == 2}


def test_each_seed_is_clustered_and_measured_as_the_pipeline_clusters_and_measures_its_map(maps, tmp_path):
    """A row of another seed holds what cluster_tokens and cluster_measures make of that seed's map with the
    reference's cut; its ari is the agreement of those clusters with the reference map's; the reference rows are
    the measures of the reference tables."""
    tables = layer2(real_cluster_tables())
    table = seed_stability(tables, maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, shuffles=20,
                           shuffle_seed=3)
    assert len(table) == 4 * 3  # (h, c) x (single, ward) x (the reference, 6, 9)
    assert table.groupby(["layer", "state", "linkage"])["seed"].apply(list).map(tuple).unique().tolist() == [(5, 6, 9)]
    assert (table["reference"] == (table["seed"] == REFERENCE_SEED)).all()
    assert (table["start"] == table["reference"].map({True: "pca", False: "random"})).all()
    _, reference = cluster_measures(tables, "d0.0_r0", "test", shuffles=20, seed=3)
    ref_rows = table[table["reference"]].set_index(["layer", "state", "linkage"])
    assert (ref_rows["ari"] == 1.0).all()
    pd.testing.assert_frame_equal(ref_rows[MEASURED], reference.set_index(["layer", "state", "linkage"])[MEASURED])

    def assert_reach(rows, clustered):  # as the contiguity by lag's of the same clusters with the same shuffles
        lags = lag_measures(clustered, "d0.0_r0", "test", max_lag=40, shuffles=20, seed=3)
        for key, view in lags.groupby(["layer", "state", "linkage"]):
            assert lag_reach(view) < 40 and rows.loc[key, "reach"] == lag_reach(view), key  # (these reach < 40)

    assert_reach(ref_rows, tables)
    for seed in (6, 9):
        clustered = {}
        for (layer, state, linkage) in tables:
            clustered[(layer, state, linkage)] = tmp_path / f"{state}_{linkage}_{seed}.csv"
            cluster_tokens(maps[(layer, state, seed)], clustered[(layer, state, linkage)], linkage, n_clusters=8)
        _, expected = cluster_measures(clustered, "d0.0_r0", "test", shuffles=20, seed=3)
        rows = table[table["seed"] == seed].set_index(["layer", "state", "linkage"])
        pd.testing.assert_frame_equal(rows[MEASURED], expected.set_index(["layer", "state", "linkage"])[MEASURED])
        assert_reach(rows, clustered)
        for key, path in clustered.items():
            ari = adjusted_rand_score(read_clusters(tables[key])["cluster"], read_clusters(path)["cluster"])
            assert rows.loc[key, "ari"] == pytest.approx(ari, abs=1e-12)
    # another seed is another map: ward's regions of it agree with the reference's only in part (single linkage's
    # islands here often survive whole)
    others = table[~table["reference"]]
    assert (others["ari"] > 0.05).all(), others[["state", "linkage", "seed", "ari"]]
    assert (others.loc[others["linkage"] == "ward", "ari"] < 0.99).all(), others[["state", "linkage", "seed", "ari"]]


def test_the_reference_map_under_another_seed_number_agrees_fully(maps):
    tables = layer2(real_cluster_tables())
    same = {(2, state, 11): _CACHE[(500, 8)]["dir"] / f"layer2_{state}.csv" for state in ("h", "c")}
    table = seed_stability(tables, same, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, shuffles=5)
    assert table["ari"].to_numpy() == pytest.approx(1.0)
    for col in MEASURED:
        by_seed = table.pivot_table(index=["state", "linkage"], columns="seed", values=col)
        assert by_seed[REFERENCE_SEED].to_numpy() == pytest.approx(by_seed[11].to_numpy()), col


def test_a_random_start_draws_another_layout_and_a_pca_start_nearly_the_same(maps, tmp_path):
    """embedding.stability_initialization: from the states' PCA (the reference map's start) another seed only jitters
    the start, and the map is nearly the reference's; from random positions it is another layout."""
    reference = pd.read_csv(_CACHE[(500, 8)]["dir"] / "layer2_c.csv")
    drawn = embed_tsne(real_activations(), tmp_path / "random.csv", 2, "c", None,
                       TSNESettings(**SETTINGS, seed=6, initialization="random"))
    jittered = pd.read_csv(maps[(2, "c", 6)])

    def alike(a, b):  # the larger |correlation| of the coordinates, mirrored or swapped maps included
        return max(abs(np.corrcoef(a[u], b[v])[0, 1]) for u in "xy" for v in "xy")

    assert alike(jittered, reference) > 0.95
    assert alike(drawn, reference) < alike(jittered, reference) - 0.1
    assert drawn[["position", "word"]].equals(reference[["position", "word"]])
    with pytest.raises(ValueError, match=r"initialization='spectral': choose one of pca, random"):
        TSNESettings(**SETTINGS, initialization="spectral")


def test_a_distance_threshold_cuts_every_map_at_that_distance(maps, tmp_path):
    """With cluster.distance_threshold each map is cut at the linkage's threshold, not at the reference's count."""
    source = layer2(real_cluster_tables())
    thresholds = {"single": 4.0, "ward": 60.0}
    tables = {}
    for (layer, state, linkage), path in source.items():
        if state != "c":
            continue
        tables[(layer, state, linkage)] = tmp_path / f"ref_{linkage}.csv"
        cluster_tokens(_CACHE[(500, 8)]["dir"] / "layer2_c.csv", tables[(layer, state, linkage)], linkage,
                       distance_threshold=thresholds[linkage])
    table = seed_stability(tables, {k: v for k, v in maps.items() if k[1] == "c"}, "d0.0_r0", "test",
                           REFERENCE_SEED, distance_threshold=thresholds, shuffles=5)
    for (layer, state, linkage), _ in tables.items():
        for seed in (6, 9):
            out = tmp_path / f"{linkage}_{seed}.csv"
            expected = cluster_tokens(maps[(2, "c", seed)], out, linkage, distance_threshold=thresholds[linkage])
            row = table[(table["linkage"] == linkage) & (table["seed"] == seed)].iloc[0]
            assert row["clusters"] == expected["cluster"].max()
    counts = table.groupby("linkage")["clusters"].apply(set)
    assert any(len(c) > 1 for c in counts), counts  # the maps' scales differ: the same cut, other counts


def test_pca_space_compares_the_maps_own_clusters_and_each_with_the_states(maps, tmp_path):
    """cluster.space: pca: the states' clusters do not depend on the map's seed; each map is cut at the states'
    number of clusters and compared with the reference map's map_cluster (ari) and with the states' (state_ari,
    the measures' map_ari for the reference)."""
    from lstmscope.state_points import pca_points

    base = _CACHE[(500, 8)]["dir"]
    tables = {}
    for state in ("h", "c"):
        emb = base / f"layer2_{state}.csv"
        points = pca_points(real_activations(), emb, 2, state, None, 10, REFERENCE_SEED)
        for linkage in ("single", "ward"):
            tables[(2, state, linkage)] = tmp_path / f"pca_{state}_{linkage}.csv"
            cluster_tokens(emb, tables[(2, state, linkage)], linkage, n_clusters=8, space="pca", points=points)
    table = seed_stability(tables, maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, space="pca", shuffles=5)
    _, measures = cluster_measures(tables, "d0.0_r0", "test", shuffles=5, space="pca")
    ref = table[table["reference"]].set_index(["layer", "state", "linkage"])
    assert ref["state_ari"].to_numpy() == pytest.approx(measures.set_index(["layer", "state", "linkage"])
                                                        .loc[ref.index, "map_ari"].to_numpy())
    assert (table["space"] == "pca").all()
    for (layer, state, linkage), path in tables.items():
        clusters = read_clusters(path)
        for seed in (6, 9):
            labels = cluster_tokens(maps[(2, state, seed)], tmp_path / "x.csv", linkage,
                                    n_clusters=int(clusters["map_cluster"].max()))["cluster"]
            row = table[(table["state"] == state) & (table["linkage"] == linkage) & (table["seed"] == seed)].iloc[0]
            assert row["ari"] == pytest.approx(adjusted_rand_score(clusters["map_cluster"], labels), abs=1e-12)
            assert row["state_ari"] == pytest.approx(adjusted_rand_score(clusters["cluster"], labels), abs=1e-12)
    with pytest.raises(ValueError, match=r"pca_h_single\.csv: holds the column map_cluster"):
        seed_stability(tables, maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, shuffles=5)


def test_a_map_of_other_tokens_or_a_missing_map_or_the_reference_seed_is_refused(maps, tmp_path):
    tables = layer2(real_cluster_tables())
    short = tmp_path / "short.csv"
    pd.read_csv(maps[(2, "c", 6)]).iloc[:-1].to_csv(short, index=False)
    with pytest.raises(ValueError, match=rf"{re.escape(str(short))}: its 499 tokens are not the 500 tokens of "
                                         r".*layer2_c_single\.csv"):
        seed_stability(tables, {**maps, (2, "c", 6): short}, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8,
                       shuffles=2)
    with pytest.raises(ValueError, match=r"no map of layer 2 h with seed 9 among the inputs"):
        seed_stability(tables, {k: v for k, v in maps.items() if k != (2, "h", 9)}, "d0.0_r0", "test",
                       REFERENCE_SEED, n_clusters=8, shuffles=2)
    with pytest.raises(ValueError, match=r"the reference seed 6 is among the other seeds \[6, 9\]"):
        seed_stability(tables, maps, "d0.0_r0", "test", 6, n_clusters=8, shuffles=2)
    with pytest.raises(ValueError, match=r"2 maps but 1 keys"):
        keyed_tables(["a.csv", "b.csv"], [[2, "c", 6]], kinds=(int, str, int), what="maps")
    assert keyed_tables(["a.csv"], [["2", "c", "6"]], kinds=(int, str, int), what="maps") == {(2, "c", 6): "a.csv"}
    assert keyed_tables(["a.csv"], [["2", "c", "ward"]]) == {(2, "c", "ward"): "a.csv"}  # cluster tables' keys


def test_stability_figure_shows_every_seed(maps, tmp_path, monkeypatch):
    """Each other seed's agreement and contiguity with a marker of its own, the reference map's contiguity as bars; a
    column's baselines on one scale, the agreement on one scale for every linkage with 0 and 1 in it."""
    import lstmscope.stability_figure as F

    tables = layer2(real_cluster_tables())
    one = seed_stability(tables, maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, shuffles=5)
    table = pd.concat([one, one.assign(model="d0.8_r0")], ignore_index=True)
    table[["contiguity_z", "word_contiguity_z"]] = 5.0
    within = table.index[table["reference"] & (table["linkage"] == "ward")][0]  # one reference bar within chance
    table.loc[within, "contiguity_z"] = -1.0
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.stability_figure(table, tmp_path / "s.png", tmp_path / "s.svg", dpi=60)
    fig = kept[0]
    axes = np.array(fig.axes).reshape(3, 2)  # (agreement, two baselines) x (single, ward)

    def marked(ax, mark):
        return sorted(float(y) for line in ax.lines if line.get_marker() == mark for y in line.get_ydata())

    for col, linkage in enumerate(("single", "ward")):
        mine = table[table["linkage"] == linkage]
        for seed, mark in ((6, "o"), (9, "s")):  # the seeds in order, one marker each
            rows = mine[mine["seed"] == seed]
            assert marked(axes[0, col], mark) == pytest.approx(sorted(rows["ari"]))
            for row, ratio in ((1, "contiguity_ratio"), (2, "word_contiguity_ratio")):
                assert marked(axes[row, col], mark) == pytest.approx(sorted(rows[ratio]))
        for row, ratio in ((1, "contiguity_ratio"), (2, "word_contiguity_ratio")):
            bars = axes[row, col].patches
            assert sorted(b.get_y() + b.get_height() for b in bars) == pytest.approx(
                sorted(mine.loc[mine["reference"], ratio]))
        assert axes[1, col].get_ylim() == axes[2, col].get_ylim()
        for row, ratio in ((1, "contiguity_ratio"), (2, "word_contiguity_ratio")):  # each bar's end marked too
            assert marked(axes[row, col], "_") == pytest.approx(sorted(mine.loc[mine["reference"], ratio]))
        assert linkage in axes[0, col].get_title()
    (hollow,) = [b for ax in axes[1:].ravel() for b in ax.patches if np.allclose(b.get_facecolor()[:3], 1)]
    assert hollow in axes[1, 1].patches
    assert hollow.get_y() + hollow.get_height() == pytest.approx(table.loc[within, "contiguity_ratio"])
    low, high = axes[0, 0].get_ylim()
    assert axes[0, 1].get_ylim() == (low, high) and low < 0 and high > 1
    # one legend, the figure's, below every panel (none of the panels' own, where it lay over the line at 1)
    assert [ax.get_legend() for ax in axes.ravel()] == [None] * 6 and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["d0.0_r0", "d0.8_r0", "seed 6", "seed 9"]
    renderer = fig.canvas.get_renderer()
    assert fig.legends[0].get_window_extent(renderer).y1 < min(ax.get_tightbbox(renderer).y0 for ax in axes.ravel())
    title = " ".join(fig._suptitle.get_text().split())  # wrapped to the figure's width
    assert "seed 5" in title and "seeds 6, 9" in title and "random positions drawn with the seed" in title


@pytest.mark.workflow
def test_the_tiny_runs_maps_of_another_seed_are_embed_tsne_at_that_seed(tiny_run, tmp_path):
    """The pipeline's map of a stability seed is the embedding stage's result at that seed, the rest of the settings
    the reference map's; and it is another map than the reference's."""
    import yaml
    from threadpoolctl import threadpool_limits

    from conftest import REPO

    settings = {**yaml.safe_load((REPO / "config.yaml").read_text())["embedding"],
                **yaml.safe_load((REPO / "tests/config/tiny.yaml").read_text())["embedding"]}
    (seed,) = settings["stability_seeds"]
    results = tiny_run / "pristine" / "results"
    h5 = results / "activations/d0.5_r0/test.h5"
    mine = tmp_path / "map.csv"
    # on one BLAS thread, as the run's jobs computed (conftest's OMP_NUM_THREADS=1): numpy 1.24's OpenBLAS rounds the
    # PCA's products differently on two
    with threadpool_limits(1):
        embed_tsne(h5, mine, 2, "c", settings["max_tokens"], TSNESettings(
            pca_components=settings["pca_components"], perplexity=settings["perplexity"], n_iter=settings["n_iter"],
            early_exaggeration_iter=settings["early_exaggeration_iter"], seed=seed,
            initialization=settings["stability_initialization"]), n_jobs=1)
    theirs = results / f"embedding/d0.5_r0/test/seed{seed}/layer2_c.csv"
    assert theirs.read_bytes() == mine.read_bytes()
    reference = pd.read_csv(results / "embedding/d0.5_r0/test/layer2_c.csv", keep_default_na=False)
    other = pd.read_csv(theirs, keep_default_na=False)
    assert other[["position", "word"]].equals(reference[["position", "word"]])
    assert not np.allclose(other[["x", "y"]], reference[["x", "y"]])
    table = pd.read_csv(results / "tables/clusters/d0.5_r0_test_seed_stability.csv")
    assert sorted(table["seed"].unique()) == sorted([seed, 42]) and len(table) == 8 * 2
    assert settings["stability_initialization"] == "random"
    assert (table["start"] == table["reference"].map({True: "pca", False: "random"})).all()


def test_the_summary_reads_back_the_tables_and_refuses_a_damaged_one_naming_it(maps, tmp_path):
    """The summary's figure drew a table without its reference rows with no bars, one without ``ari`` beside another
    model's with its points missing, and an empty file stopped it with pandas' EmptyDataError naming no file."""
    from lstmscope.cluster_stability import read_seed_stability

    tables = layer2(real_cluster_tables())
    table = seed_stability(tables, maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8, shuffles=5, shuffle_seed=3)
    good, other = tmp_path / "good.csv", tmp_path / "other.csv"
    table.to_csv(good, index=False)
    table.assign(model="d0.8_r0").to_csv(other, index=False)
    both = read_seed_stability([good, other])
    pd.testing.assert_frame_equal(both, pd.concat([table, table.assign(model="d0.8_r0")], ignore_index=True),
                                  check_dtype=False)
    blank = table.copy()
    blank.loc[3, "ari"] = np.nan
    ward = (table["linkage"] == "ward") & (table["state"] == "c")
    cases = {
        "empty": ("", "not a readable CSV"),
        "no_ari": (table.drop(columns="ari"), "missing columns ari"),
        "blank": (blank, r"column ari must hold numbers; line 5 has no value \(an empty cell or nan\)"),
        "no_reference": (table[~(ward & table["reference"])],
                         "layer 2 c ward has 0 rows of the reference map and 2 of other maps"),
        "no_other": (table[~(ward & ~table["reference"])],
                     "layer 2 c ward has 1 rows of the reference map and 0 of other maps"),
        "two_models": (table.assign(model=np.where(table.index % 2, "d0.1_r0", "d0.0_r0")),
                       r"the rows of 2 models \(d0.0_r0, d0.1_r0\)"),
        "flag": (table.assign(reference=table["reference"].map({True: "yes", False: "no"})),
                 "column reference must hold True or False; line 2 has 'yes'"),
    }
    for name, (damaged, said) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(damaged) if isinstance(damaged, str) else damaged.to_csv(path, index=False)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: {said}"):
            read_seed_stability([good, path])


def test_the_summary_script_reads_the_tables_checked(maps, tmp_path):
    """The rule's script, run as Snakemake runs it: a table without its reference rows (drawn without bars) is
    refused and nothing written; whole tables give the table, the figure and the table's record."""
    from conftest import run_rule_script

    table = seed_stability(layer2(real_cluster_tables()), maps, "d0.0_r0", "test", REFERENCE_SEED, n_clusters=8,
                           shuffles=5, shuffle_seed=3)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    table.to_csv(good, index=False)
    table[~table["reference"]].assign(model="d0.8_r0").to_csv(bad, index=False)
    out = {"table": str(tmp_path / "s.csv"), "png": str(tmp_path / "s.png"), "svg": str(tmp_path / "s.svg")}
    with pytest.raises(ValueError, match=rf"^{re.escape(str(bad))}: layer 2 c single has 0 rows of the reference"):
        run_rule_script("cluster_stability_summary", "cluster_stability_summary", tmp_path / "s.log",
                        {"tables": [str(good), str(bad)]}, out, {"dpi": 50})
    assert not any(os.path.exists(p) for p in out.values())
    run_rule_script("cluster_stability_summary", "cluster_stability_summary", tmp_path / "s.log",
                    {"tables": [str(good)]}, out, {"dpi": 50})
    assert all(os.path.getsize(p) > 0 for p in out.values()) and (tmp_path / "s.csv.provenance.json").is_file()

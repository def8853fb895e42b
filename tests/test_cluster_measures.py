"""What the clusters hold: Table 5.1, word-class purity, contiguity against a shuffled baseline."""
from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedding_data import real_cluster_tables
from lstmscope.cluster import read_clusters
from lstmscope.cluster_measures import (chance_same, cluster_measures, cluster_table, contiguity_by_lag, lag_measures,
                                        lag_reach, reach_of, read_lag_tables, read_measures, expected_runs, mean_run_length,
                                        partition_measures, runs, same_share, shuffled_run_length, top_words_html,
                                        word_class, word_shuffled_run_length, word_shuffles)


@pytest.fixture(scope="module")
def tables():
    return real_cluster_tables()


def test_word_classes_of_wikitext_tokens():
    cases = {"<eos>": "eos", "<unk>": "unk", ".": "punctuation", "@-@": "punctuation", "@,@": "punctuation",
             '"': "punctuation", "1": "number", "000": "number", "1990s": "number", "3.5": "number",
             "the": "function", "The": "function", "of": "function", "'s": "function", "n't": "function",
             "Robert": "capitalized", "England": "capitalized", "actor": "content", "played": "content",
             # a function word in capitals is a name: "US" (the United States), "AM" (radio); "I" and "A" are not
             "US": "capitalized", "AM": "capitalized", "I": "function", "A": "function", "Us": "function"}
    assert {w: word_class(w) for w in cases} == cases


def test_runs_and_mean_run_length():
    labels = np.array([1, 1, 2, 2, 2, 3])
    starts, lengths, values = runs(labels)
    assert starts.tolist() == [0, 2, 5] and lengths.tolist() == [2, 3, 1] and values.tolist() == [1, 2, 3]
    assert mean_run_length(labels) == 2.0
    assert mean_run_length(np.array([4, 4, 4])) == 3.0
    assert mean_run_length(np.array([1, 2, 1, 2])) == 1.0


def test_shuffled_baseline_matches_the_closed_form_and_is_reproducible():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), [400, 250, 150, 100, 60, 40])
    mean, sd = shuffled_run_length(labels, shuffles=200, seed=1)
    assert mean == pytest.approx(len(labels) / expected_runs(labels), rel=0.01)
    assert 0 < sd < 0.1 * mean
    assert shuffled_run_length(labels, 200, seed=1) == (mean, sd)
    # the closed form itself, against counting runs of random orders
    counted = np.mean([1 + np.count_nonzero(np.diff(rng.permutation(labels))) for _ in range(2000)])
    assert expected_runs(labels) == pytest.approx(counted, rel=0.005)


def test_contiguity_ratio_separates_spans_from_scattered_tokens():
    words = ["w"] * 1000
    blocks = np.repeat(np.arange(10), 100)  # ten spans of the text
    scattered = np.random.default_rng(3).permutation(blocks)
    spans = partition_measures(pd.DataFrame({"position": range(1000), "word": words, "cluster": blocks}), 50, 0)
    noise = partition_measures(pd.DataFrame({"position": range(1000), "word": words, "cluster": scattered}), 50, 0)
    assert spans["mean_run_length"] == 100.0 and spans["contiguity_ratio"] > 50
    assert noise["contiguity_ratio"] == pytest.approx(1.0, abs=0.1)
    mean, sd = shuffled_run_length(blocks, 50, 0)  # the same shuffles
    assert spans["contiguity_z"] == pytest.approx((100.0 - mean) / sd) and spans["contiguity_z"] > 100
    assert abs(noise["contiguity_z"]) < 3  # a random order is one of the shuffled orders' kind


def test_the_word_baseline_keeps_each_words_clusters():
    """Each word's labels are shuffled among that word's tokens only: where every token of a word is in one
    cluster nothing moves, and the spans that the words alone make ("= = =") are not contiguity beyond them."""
    words = np.array("= = = Film = = = <eos> <eos> the film was made . <eos>".split() * 40)
    by_word = pd.factorize(words)[0]
    table = pd.DataFrame({"position": range(len(words)), "word": words, "cluster": by_word})
    m = partition_measures(table, shuffles=20, seed=0)
    assert m["word_shuffled_run_length"] == m["mean_run_length"] and m["word_shuffled_sd"] == 0
    assert m["word_contiguity_ratio"] == 1.0 and np.isnan(m["word_contiguity_z"])
    assert m["contiguity_ratio"] > 1.1 and m["contiguity_z"] > 5  # against uniformly shuffled labels: spans
    # "a" alternates with "b"; a's tokens are in clusters 1 and 2, b's in 3: with each word's labels kept on
    # that word's tokens no two neighbours can share a cluster, so every order has n runs; uniformly shuffled
    # labels put 1s and 2s side by side
    words = np.array(["a", "b"] * 200)
    labels = np.where(words == "b", 3, np.resize([1, 1, 2, 2], len(words)))
    assert word_shuffled_run_length(labels, words, 30, 0) == (1.0, 0.0)
    assert shuffled_run_length(labels, 30, 0)[0] > 1.2
    # one word everywhere: the same as shuffling every label
    blocks = np.repeat(np.arange(10), 100)
    mean, sd = word_shuffled_run_length(blocks, np.array(["w"] * 1000), 200, 1)
    assert mean == pytest.approx(len(blocks) / expected_runs(blocks), rel=0.01) and sd > 0
    assert word_shuffled_run_length(blocks, np.array(["w"] * 1000), 200, 1) == (mean, sd)  # reproducible
    with pytest.raises(ValueError, match="shuffles=0"):
        word_shuffled_run_length(blocks, np.array(["w"] * 1000), 0, 1)


def test_purity_is_one_when_clusters_are_word_classes():
    words = [".", ",", "the", "of", "Paris", "London", "ran", "sat"] * 20
    by_class = {c: i for i, c in enumerate(sorted({word_class(w) for w in words}))}
    table = pd.DataFrame({"position": range(len(words)), "word": words,
                          "cluster": [by_class[word_class(w)] for w in words]})
    m = partition_measures(table, shuffles=10, seed=0)
    assert m["purity"] == 1.0 and m["class_baseline"] == 0.25 and m["clusters"] == 4


def test_table_5_1_counts_the_words_of_each_cluster(tables):
    table = read_clusters(tables[(2, "c", "ward")])
    clusters = cluster_table(table, top_words=5)
    assert clusters["cluster"].tolist() == sorted(clusters["cluster"])
    assert clusters["size"].sum() == len(table) and clusters["size"].is_monotonic_decreasing
    for row in clusters.itertuples():
        members = table[table.cluster == row.cluster]
        counts = Counter(members["word"])
        top = row.top_words.split(" · ")
        assert len(top) == min(5, len(counts))
        word, count = top[0].rsplit(" (", 1)
        assert counts[word] == int(count.rstrip(")")) == max(counts.values())
        # the distinctive words: (in the cluster, in the text) right, the largest shares of those with 3 or more
        listed = [(w, int(c), int(n)) for w, c, n in re.findall(r"(\S+) \((\d+)/(\d+)\)", row.distinctive_words)]
        in_text = Counter(table["word"])
        assert [(c, n) for w, c, n in listed] == [(counts[w], in_text[w]) for w, _, _ in listed]
        eligible = sorted({counts[w] / in_text[w] for w in counts if counts[w] >= 3}, reverse=True)
        assert [c / n for _, c, n in listed] == sorted((c / n for _, c, n in listed), reverse=True)
        assert {c / n for _, c, n in listed} <= set(eligible)
        assert not listed or listed[0][1] / listed[0][2] == eligible[0]
        assert len(listed) == min(5, sum(c >= 3 for c in counts.values()))
        classes = Counter(word_class(w) for w in members["word"])
        assert row.majority_class in classes and row.purity == classes[row.majority_class] / row.size
        # the longest span: consecutive tokens, all of this cluster, and no longer run exists
        span = table.iloc[row.longest_span_start: row.longest_span_start + row.longest_span_length]
        assert (span["cluster"] == row.cluster).all()
        _, lengths, values = runs(table["cluster"].to_numpy())
        assert row.longest_span_length == lengths[values == row.cluster].max()


def test_distinctive_words_by_hand():
    # cluster 1 holds "the" 5 of its 10 times, "Fu" 3 of 3, "was" 4 of 5, "x" 2 of 2 (too few to be listed);
    # ties of share (Fu 3/3 and y 3/3) go to the word with more tokens in the cluster, then to the first one
    words = ["the"] * 5 + ["Fu"] * 3 + ["was"] * 4 + ["x"] * 2 + ["y"] * 3 + ["the"] * 5 + ["was"]
    labels = [1] * 17 + [2] * 6
    clusters = cluster_table(pd.DataFrame({"position": range(len(words)), "word": words, "cluster": labels}))
    assert clusters.loc[0, "distinctive_words"] == "Fu (3/3) \u00b7 y (3/3) \u00b7 was (4/5) \u00b7 the (5/10)"
    assert clusters.loc[1, "distinctive_words"] == "the (5/10)"
    assert "the (5) \u00b7 was (4)" in clusters.loc[0, "top_words"]


def test_table_5_1_rows_follow_the_cluster_numbers_when_sizes_tie():
    # clusters 2 and 3 both have 4 members; 2 appears first (position 1), but 3's longest run starts earlier
    labels = [1, 2, 1, 3, 3, 3, 3, 1, 1, 2, 2, 2, 1]
    table = pd.DataFrame({"position": range(len(labels)), "word": list("abcdefghijklm"), "cluster": labels})
    clusters = cluster_table(table)
    assert clusters["cluster"].tolist() == [1, 2, 3] and clusters["size"].tolist() == [5, 4, 4]
    assert clusters["longest_span_start"].tolist() == [7, 9, 3]


def test_measures_of_a_real_run_and_rendered_table(tables, tmp_path):
    clusters, measures = cluster_measures(tables, "d0.0_r0", "test", top_words=6, shuffles=30, seed=0)
    assert len(measures) == 8
    assert set(zip(measures.layer, measures.state, measures.linkage)) == set(tables)
    assert (measures["points"] == 500).all() and (measures["clusters"] == 8).all()
    for row in measures.itertuples():  # each measure counted again from its cluster table
        table = read_clusters(tables[(row.layer, row.state, row.linkage)])
        labels, classes = table["cluster"].to_numpy(), [word_class(w) for w in table["word"].astype(str)]
        n = len(labels)
        by_cluster = {c: Counter(k for k, label in zip(classes, labels) if label == c) for c in set(labels)}
        assert row.purity == pytest.approx(sum(max(k.values()) for k in by_cluster.values()) / n)
        assert row.class_baseline == pytest.approx(max(Counter(classes).values()) / n)
        assert row.largest_share == pytest.approx(max(Counter(labels).values()) / n)
        assert row.mean_run_length == pytest.approx(n / (1 + np.count_nonzero(labels[1:] != labels[:-1])))
    assert (measures["purity"] > measures["class_baseline"]).any()  # clusters that say something of word classes
    assert set(clusters.columns[:5]) == {"model", "text", "layer", "state", "linkage"}
    page = top_words_html(clusters, measures, "Table 5.1 <test>")
    assert "&lt;unk&gt;" in page and "<unk>" not in page and "Table 5.1 &lt;test&gt;" in page
    assert page.count("<th>most distinctive words</th>") == 8
    assert page.count("<table>") == 8
    # layer by layer, the hidden state before the cell state (the thesis's order), then by linkage
    heads = re.findall(r"Layer (\d), (hidden state h|cell state c), (\w+) linkage", page)
    assert heads == [(layer, f"{name} {state}", linkage) for layer in "12"
                     for state, name in (("h", "hidden state"), ("c", "cell state")) for linkage in ("single", "ward")]
    assert list(zip(measures.layer, measures.state)) == [(layer, state) for layer in (1, 2) for state in "hc"
                                                         for _ in range(2)]
    # the table read back from its CSV renders the same, also where a cluster has no distinctive word (an empty
    # cell, which pandas reads as NaN)
    clusters.loc[0, "distinctive_words"] = ""
    written = tmp_path / "t.csv"
    clusters.to_csv(written, index=False)
    again = pd.read_csv(written, keep_default_na=False)
    assert top_words_html(again, measures, "t") == top_words_html(clusters, measures, "t")
    assert top_words_html(pd.read_csv(written), measures, "t") == top_words_html(clusters, measures, "t")
    # the contiguity figure's tables read back as written; one short of a column, or with an empty ratio, is named (a
    # model's bars went missing, or every bar was drawn filled, without a word)
    measured = tmp_path / "m.csv"
    measures.to_csv(measured, index=False)
    pd.testing.assert_frame_equal(read_measures([measured]), measures, check_dtype=False)
    one_cluster = measures.assign(contiguity_z=[np.nan] + [1.0] * 7)  # one cluster: no z, as cluster_measures writes
    one_cluster.to_csv(tmp_path / "one.csv", index=False)
    assert np.isnan(read_measures([tmp_path / "one.csv"])["contiguity_z"].iloc[0])
    for name, damaged, said in [
        ("no_z", measures.drop(columns="contiguity_z"), "missing columns contiguity_z"),
        ("blank", measures.assign(word_contiguity_ratio=[np.nan] + [1.0] * 7),
         r"column word_contiguity_ratio must hold numbers; line 2 has no value \(an empty cell or nan\)"),
        ("layer", measures.assign(layer=measures["layer"] + 0.5),
         "column layer must hold whole numbers; line 2 has 1.5"),
        ("z_text", measures.astype({"contiguity_z": object}).assign(contiguity_z=["abc"] + [1.0] * 7),
         "column contiguity_z must hold numbers; line 2 has 'abc'"),
    ]:
        damaged.to_csv(tmp_path / f"{name}.csv", index=False)
        with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / name))}\.csv: {said}$"):
            read_measures([measured, tmp_path / f"{name}.csv"])


def test_distinctive_words_survive_their_own_format():
    from lstmscope.top_words import format_distinctive_words, parse_distinctive_words

    triples = [("(", 3, 20), (")", 4, 4), ("a/b", 5, 9), ("·", 3, 3), ("x(y", 7, 8)]
    assert parse_distinctive_words(format_distinctive_words(triples)) == triples
    assert parse_distinctive_words("") == [] and parse_distinctive_words(float("nan")) == []


def test_table_5_1_page_boxes_each_word_so_punctuation_reads_unambiguously():
    from lstmscope.cluster_measures import format_top_words, top_words_cells

    pairs = [(",", 197), ("<unk>", 3), ("(", 2), ("·", 1), ("(2)", 1), ("the", 1)]
    cells = top_words_cells(format_top_words(pairs))
    found = re.findall(r"<code>(.*?)</code>&#8239;(\d+)", cells)
    assert [(html.unescape(w), int(c)) for w, c in found] == pairs
    assert top_words_cells("") == ""


def test_measures_of_pca_space_tables_compare_them_with_the_map(tables, tmp_path):
    """Tables of cluster.space: pca also hold the map's clusters (map_cluster): map_ari is 1 where the two
    partitions are the same up to their numbers, 0 where the map holds one cluster; a table of the other space
    is refused."""
    pca_tables = {}
    for k, (key, path) in enumerate(sorted(tables.items())):
        table = read_clusters(path)
        # the first view: the map's clusters renumbered (the same partition); the others: one cluster of the map
        table["map_cluster"] = (table["cluster"].max() + 1 - table["cluster"]) if k == 0 else 1
        pca_tables[key] = tmp_path / f"{k}.csv"
        table.to_csv(pca_tables[key], index=False)
    clusters, measures = cluster_measures(pca_tables, "d0.0_r0", "test", top_words=6, shuffles=30, seed=0,
                                          space="pca")
    first = min(tables)
    by_view = measures.set_index(["layer", "state", "linkage"])
    assert (measures["space"] == "pca").all()
    assert by_view.loc[first, "map_ari"] == pytest.approx(1.0)
    assert by_view.drop(index=[first])["map_ari"].abs().max() == pytest.approx(0.0, abs=1e-12)
    _, on_map = cluster_measures(tables, "d0.0_r0", "test", top_words=6, shuffles=30, seed=0)
    assert (on_map["space"] == "map").all() and "map_ari" not in on_map.columns
    same = ["points", "clusters", "mean_run_length", "shuffled_run_length", "contiguity_ratio", "purity"]
    pd.testing.assert_frame_equal(measures[same], on_map[same])  # the clusters themselves are the same
    page = top_words_html(clusters, measures, "t")
    assert page.count("adjusted Rand index 1.00") == 1 and page.count("adjusted Rand index 0.00") == 7
    assert "not the t-SNE map" in page and "not the t-SNE map" not in top_words_html(clusters, on_map, "t")
    with pytest.raises(ValueError, match=r"/\d\.csv: holds the column map_cluster, so it is not a table of "
                                         r"clusters of the map"):
        cluster_measures(pca_tables, "d0.0_r0", "test", shuffles=2)
    with pytest.raises(ValueError, match=r"lacks the column map_cluster, so it is not a table of clusters of "
                                         r"the PCA space"):
        cluster_measures(tables, "d0.0_r0", "test", shuffles=2, space="pca")


def test_tables_of_other_tokens_are_refused_where_they_are_put_side_by_side(tables, tmp_path):
    """The measures of one text, Fig. 5.8's two linkages and Fig. 5.11's views took a table cut short (or of another
    text) beside the others and measured or drew it without a word."""
    from lstmscope.points import read_embedding, read_same_tokens

    key = sorted(tables)[-1]
    short = tmp_path / "short.csv"
    pd.read_csv(tables[key]).iloc[:-100].to_csv(short, index=False)
    said = (rf"^{re.escape(str(short))}: its 400 tokens are not the 500 tokens of .*\.csv "
            r"\(the same positions and words\)")
    with pytest.raises(ValueError, match=said):
        cluster_measures({**tables, key: short}, "d0.0_r0", "test", shuffles=2)
    other = tmp_path / "other.csv"
    words = pd.read_csv(tables[key], keep_default_na=False)
    first_other = int(np.argmax(words["word"].to_numpy() != "the"))
    words.assign(word="the").to_csv(other, index=False)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(other))}: its 500 tokens are not the 500 tokens of .*"
                                         rf"\(the same positions and words; line {2 + first_other} differs first\)"):
        read_same_tokens({"ward": tables[key], "single": other}, read_clusters)
    with pytest.raises(ValueError, match=said):
        read_same_tokens({(1, "h"): tables[key], (2, "c"): short}, read_embedding)
    both = read_same_tokens({"ward": tables[key], "single": tables[sorted(tables)[0]]}, read_clusters)
    assert list(both) == ["ward", "single"] and (both["ward"]["position"] == both["single"]["position"]).all()


def test_the_summary_and_figure_scripts_read_their_tables_checked(tables, tmp_path):
    """The rules' scripts, run as Snakemake runs them on real tables: the contiguity summary refuses a measures
    table without its z (every bar was drawn filled), Fig. 5.8 and Fig. 5.11 tables of other tokens; each writes
    nothing then, and its figures where the tables are whole."""
    from conftest import run_rule_script

    _, measures = cluster_measures(tables, "d0.0_r0", "test", shuffles=5, seed=0)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    measures.to_csv(good, index=False)
    measures.assign(model="d0.8_r0").drop(columns="contiguity_z").to_csv(bad, index=False)
    lags, bad_lags = tmp_path / "lags.csv", tmp_path / "bad_lags.csv"
    lag_measures(tables, "d0.0_r0", "test", max_lag=10, shuffles=5, seed=0).to_csv(lags, index=False)
    pd.read_csv(lags).assign(model="d0.8_r0").drop(columns="word_z").to_csv(bad_lags, index=False)
    out = {"table": str(tmp_path / "c.csv"), "png": str(tmp_path / "c.png"), "svg": str(tmp_path / "c.svg"),
           "lag_table": str(tmp_path / "l.csv"), "lag_png": str(tmp_path / "l.png"), "lag_svg": str(tmp_path / "l.svg")}
    for given, missing in [({"measures": [good, bad], "lags": [lags]}, (bad, "contiguity_z")),
                           ({"measures": [good], "lags": [lags, bad_lags]}, (bad_lags, "word_z"))]:
        with pytest.raises(ValueError, match=rf"^{re.escape(str(missing[0]))}: missing columns {missing[1]}$"):
            run_rule_script("cluster_contiguity", "cluster_contiguity", tmp_path / "c.log", given, out, {"dpi": 50})
        assert not any(Path(p).exists() for p in out.values())
    run_rule_script("cluster_contiguity", "cluster_contiguity", tmp_path / "c.log",
                    {"measures": [str(good)], "lags": [str(lags)]}, out, {"dpi": 50})
    assert all(Path(p).stat().st_size > 0 for p in out.values())
    assert (tmp_path / "c.csv.provenance.json").is_file() and (tmp_path / "l.csv.provenance.json").is_file()

    ward, single = tables[(1, "h", "ward")], tables[(1, "h", "single")]
    short = tmp_path / "short.csv"
    pd.read_csv(single).iloc[:-1].to_csv(short, index=False)
    figure = {"png": str(tmp_path / "f.png"), "svg": str(tmp_path / "f.svg")}
    said = rf"^{re.escape(str(short))}: its 499 tokens are not the 500 tokens of "
    with pytest.raises(ValueError, match=said):
        run_rule_script("cluster_comparison", "cluster_comparison", tmp_path / "f.log",
                        {"ward": str(ward), "single": str(short)}, figure, {"title": "t", "dpi": 50})
    with pytest.raises(ValueError, match=said):
        run_rule_script("highlight_word", "highlight_word", tmp_path / "f.log",
                        {"embeddings": [str(ward), str(short)]}, figure,
                        {"views": [[1, "h"], [2, "h"]], "word": "the", "title": "t", "dpi": 50})
    assert not any(Path(p).exists() for p in figure.values())
    run_rule_script("cluster_comparison", "cluster_comparison", tmp_path / "f.log",
                    {"ward": str(ward), "single": str(single)}, figure, {"title": "t", "dpi": 50})
    assert all(Path(p).stat().st_size > 0 for p in figure.values())


def test_same_cluster_share_by_lag_and_its_chance_by_hand():
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    # lag 1: (0,0) (0,1) (1,1) (1,0) (0,0) (0,1) (1,1): 4 of 7; lag 2: every pair differs; lag 4: every pair alike
    assert same_share(labels, [1, 2, 4]).tolist() == [4 / 7, 0.0, 1.0]
    assert chance_same(labels) == pytest.approx((4 * 3 + 4 * 3) / (8 * 7))  # two clusters of 4
    lags = contiguity_by_lag(labels, np.array(list("abcdefgh")), max_lag=100, shuffles=3, seed=0)
    assert lags["lag"].tolist() == list(range(1, 8))  # capped at the tokens less one
    assert lags["pairs"].tolist() == [7, 6, 5, 4, 3, 2, 1]
    assert lags.loc[lags.lag == 2, "kappa"].item() == pytest.approx((0 - 3 / 7) / (1 - 3 / 7))  # -0.75
    assert lags.loc[lags.lag == 4, "kappa"].item() == pytest.approx(1.0)
    # every word seen once: shuffling each word's labels among its own tokens moves nothing
    assert np.allclose(lags["word_same"], lags["same"], rtol=1e-15) and (lags["word_same_sd"] == 0).all()
    assert lags["word_z"].isna().all() and np.allclose(lags["word_kappa"], lags["kappa"], rtol=1e-15)


def test_chance_is_the_share_of_random_orders_at_every_lag():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), [300, 200, 100, 60, 40])
    counted = np.mean([same_share(rng.permutation(labels), [1, 7, 50]) for _ in range(2000)], axis=0)
    assert counted == pytest.approx([chance_same(labels)] * 3, rel=0.01)
    with pytest.raises(ValueError, match="^1 label: a pair needs two$"):
        chance_same(np.array([3]))


def test_contiguity_by_lag_of_spans_falls_as_pairs_cross_their_ends():
    """Ten spans of 100 tokens: of the pairs ``lag`` apart, those that straddle one of the nine borders differ, so
    the share is (1000 - 10 lag) / (1000 - lag) while lag < 100; all words alike, each word's shuffles are uniform
    shuffles, at chance; random order is at chance too."""
    blocks = np.repeat(np.arange(10), 100)
    words = np.array(["w"] * 1000)
    lags = contiguity_by_lag(blocks, words, max_lag=150, shuffles=50, seed=0)
    short = lags[lags.lag < 100]
    assert np.allclose(short["same"], (1000 - 10 * short["lag"]) / (1000 - short["lag"]))
    assert lags.loc[lags.lag == 100, "same"].item() == 0.0  # every pair 100 apart lies in neighbouring spans
    assert (lags["chance"] == chance_same(blocks)).all() and chance_same(blocks) == pytest.approx(99 / 999)
    assert np.abs(lags["word_kappa"]).max() < 0.05 and (lags.loc[lags.lag < 50, "word_z"] > 10).all()
    scattered = contiguity_by_lag(np.random.default_rng(1).permutation(blocks), words, 20, shuffles=20, seed=0)
    assert np.abs(scattered["kappa"]).max() < 0.05
    assert contiguity_by_lag(blocks, words, 150, shuffles=50, seed=0).equals(lags)  # the seed decides the shuffles
    for bad, message in [(dict(max_lag=0), "^max_lag=0: must be at least 1$"),
                         (dict(max_lag=5, shuffles=1), r"^shuffles=1: must be at least 2 \(their spread is the scale "
                                                       r"of word_z\)$")]:
        with pytest.raises(ValueError, match=message):
            contiguity_by_lag(blocks, words, **{"shuffles": 5, **bad})


def test_lag_measures_of_real_clusters_agree_with_the_run_length(tables, tmp_path):
    """Lag 1 is the run length in other terms: n / (1 + (n - 1) (1 - share at lag 1)) is the mean run length
    cluster_measures gives each view; the table keys every lag of every view, and reads back checked."""
    _, measures = cluster_measures(tables, "d0.0_r0", "test", shuffles=5, seed=0)
    lags = lag_measures(tables, "d0.0_r0", "test", max_lag=40, shuffles=5, seed=0)
    keys = ["layer", "state", "linkage"]
    assert len(lags) == 40 * len(measures) and lags.groupby(keys).size().eq(40).all()
    assert lags[keys].drop_duplicates().values.tolist() == measures[keys].values.tolist()  # the same order
    first = lags[lags.lag == 1].reset_index(drop=True)
    n = measures["points"]
    assert np.allclose(n / (1 + (n - 1) * (1 - first["same"])), measures["mean_run_length"], rtol=1e-12)
    assert (lags["model"] == "d0.0_r0").all() and (lags["space"] == "map").all()
    path = tmp_path / "lags.csv"
    lags.to_csv(path, index=False)
    assert read_lag_tables([path]).shape == lags.shape
    lags.drop(columns="kappa").to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: missing columns kappa$"):
        read_lag_tables([path])


def test_the_reach_counts_the_lags_beyond_the_word_baseline_from_lag_1_on():
    view = pd.DataFrame({"lag": [3, 1, 2, 4, 5], "word_z": [1.0, 5.0, 2.5, 9.0, np.nan]})  # in any row order
    assert lag_reach(view) == 2  # lags 1 and 2; lag 3 falls short, so lag 4 no longer counts
    assert lag_reach(view.assign(word_z=[2.0, 5.0, 2.5, 9.0, 3.0])) == 5
    assert lag_reach(view.assign(word_z=[2.0, np.nan, 2.5, 9.0, 3.0])) == 0  # no spread at lag 1: not beyond it
    assert lag_reach(view, z=0.5) == 4
    with pytest.raises(ValueError, match=r"^the lags of one view, 1, 2, 3 \.\.\. without gaps, are needed$"):
        lag_reach(view[view.lag != 2])


def test_the_word_baseline_by_lag_is_the_mean_and_spread_of_word_shuffles():
    """Word "a" is read twice, in clusters 0 and 1; every other word once: each shuffle either keeps [0, 0, 1, 1]
    (lag 1: 2 of 3 pairs alike; lag 3: 0 of 1) or swaps a's labels, [1, 0, 0, 1] (1 of 3; 1 of 1). So the
    baseline at lag 1 is (2 - swapped share) / 3 and its spread that of a coin, about 0.5 / 3 (a standard deviation
    over the shuffles, not the standard error of their mean)."""
    labels, words = np.array([0, 0, 1, 1]), np.array(["a", "x", "a", "y"])
    orders = [s.tolist() for s in word_shuffles(labels, words, 400, seed=5)]
    assert set(map(tuple, orders)) == {(0, 0, 1, 1), (1, 0, 0, 1)}
    swapped = np.array([o == [1, 0, 0, 1] for o in orders], dtype=float)
    assert 0.4 < swapped.mean() < 0.6
    lags = contiguity_by_lag(labels, words, max_lag=3, shuffles=400, seed=5).set_index("lag")
    assert lags.loc[1, "word_same"] == pytest.approx((2 - swapped.mean()) / 3)
    spread = lags.loc[1, "word_same_sd"]
    assert spread == pytest.approx(swapped.std(ddof=1) / 3) and 0.16 < spread < 0.17
    assert lags.loc[3, "word_same"] == pytest.approx(swapped.mean()) and lags.loc[2, "word_same_sd"] == 0
    assert lags.loc[1, "word_z"] == pytest.approx((2 / 3 - lags.loc[1, "word_same"]) / lags.loc[1, "word_same_sd"])


def test_both_word_baselines_read_the_same_shuffles(tables):
    """word_shuffled_run_length and contiguity_by_lag's word baseline take the same orders from one seed: the run
    length of each order, n / (1 + (n - 1)(1 - share at lag 1)), averages to the former; their shares to the latter."""
    table = read_clusters(tables[(2, "c", "ward")]).sort_values("position")
    labels, words = table["cluster"].to_numpy(), table["word"].astype(str).to_numpy()
    n = len(labels)
    shares = np.array([same_share(order, range(1, 11)) for order in word_shuffles(labels, words, 30, seed=7)])
    assert np.mean(n / (1 + (n - 1) * (1 - shares[:, 0]))) == pytest.approx(
        word_shuffled_run_length(labels, words, 30, seed=7)[0], rel=1e-12)
    lags = contiguity_by_lag(labels, words, max_lag=10, shuffles=30, seed=7)
    assert np.allclose(lags["word_same"], shares.mean(axis=0), rtol=1e-12)
    assert np.allclose(lags["word_same_sd"], shares.std(axis=0, ddof=1), rtol=1e-9)
    orders = word_shuffles(labels, words, 3, seed=7)
    assert next(orders) is not next(orders)  # each order an array of its own
    with pytest.raises(ValueError, match="^3 labels but 2 words$"):
        word_shuffles(labels[:3], words[:2], 3, seed=7)  # refused at the call, not at the first order


def test_same_share_takes_a_lag_or_lags_that_have_pairs():
    labels = np.array([1, 1, 2, 1])
    assert same_share(labels, 2).tolist() == [0.5] and same_share(labels, [3]).tolist() == [1.0]
    for lag in (0, 4, -1):
        with pytest.raises(ValueError, match=rf"^lag {lag}: 4 labels have pairs 1 to 3 apart$"):
            same_share(labels, [1, lag])


def test_a_lag_table_holds_each_lag_of_a_view_once(tables, tmp_path):
    lags = lag_measures(tables, "d0.0_r0", "test", max_lag=5, shuffles=3, seed=0)
    path = tmp_path / "twice.csv"
    pd.concat([lags, lags.iloc[[7]]], ignore_index=True).to_csv(path, index=False)
    r = lags.iloc[7]
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: line {len(lags) + 2} repeats layer {r['layer']} "
                                         rf"{r['state']} {r['linkage']} lag {r['lag']}$"):
        read_lag_tables([path])


def test_the_reach_needs_no_longest_lag():
    """Ten spans of 100 tokens, two words alternating on all of them: pairs stay in one span well beyond 16 lags, so
    reach_of takes lags 1 to 16, 32, 64 ...; it gives what lag_reach gives over every lag the tokens have."""
    blocks = np.repeat(np.arange(10), 100)
    words = np.array(["a", "b"] * 500)  # two words on every span: each word's shuffles scatter the spans
    every = lag_reach(contiguity_by_lag(blocks, words, max_lag=999, shuffles=20, seed=4))
    assert 16 < every < 999 and reach_of(blocks, words, shuffles=20, seed=4) == every


@pytest.mark.parametrize("n,reach", [(2, 0), (2, 1), (17, 16), (33, 16), (33, 17), (33, 32), (1000, 32), (1000, 999)])
def test_the_reach_stops_at_any_length_and_at_the_last_lag(monkeypatch, n, reach):
    """Where the clusters lie beyond the word baseline at lags 1 ... reach and not after (a stand-in for
    contiguity_by_lag that says so), reach_of finds it, whether it ends at a round's last lag (16, 32) or the tokens'
    (n - 1: every lag beyond, where no further round can add a lag)."""
    import lstmscope.cluster_measures as M

    calls = []

    def by_lag(labels, words, max_lag, shuffles, seed):
        lags = np.arange(1, min(max_lag, len(labels) - 1) + 1)
        calls.append(len(lags))
        assert len(calls) <= 12, "reach_of does not stop"  # 16 ... 2^15 lags: past any text here
        return pd.DataFrame({"lag": lags, "word_z": np.where(lags <= reach, 5.0, 0.0)})

    monkeypatch.setattr(M, "contiguity_by_lag", by_lag)
    assert reach_of(np.zeros(n, int), np.array(["w"] * n)) == reach
    assert calls[-1] > reach or calls[-1] == n - 1

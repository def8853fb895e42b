"""neuron_divergence: KL against the layer average, ranking, dead neurons, on a small real model."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from lstmscope.activations import dump_activations
from lstmscope.divergence import distributions, divergence_table, neuron_divergence, ranked, read_divergence
from lstmscope.histogram import HistogramError, neuron_histograms, read_histograms, select

from neurons_support import HIDDEN, LAYERS, TEXT, tiny  # noqa: F401  (fixture)

EPS = 1e-10


@pytest.fixture(scope="module")
def dead_model_tables(tiny, tmp_path_factory):
    """Histograms and divergence of the model with one switched-off unit (h of layer 2, unit tiny.dead_neuron)."""
    d = tmp_path_factory.mktemp("divergence")
    act = d / "dead.h5"
    dump_activations(tiny.dead_checkpoint, tiny.vocabulary, tiny.split, TEXT, act, chunk_tokens=64,
                     model_info={"name": "d0.2_r0"})
    neuron_histograms(act, d / "hist.h5", d / "ranges.csv", 0.01, [-3.0, 3.0], near_zero=0.01)
    table = neuron_divergence(d / "hist.h5", d / "divergence.csv", d / "dead.csv", epsilon=EPS, dead_threshold=0.01,
                              dead_fraction=0.9)
    return d, table


def test_kl_equals_scipy_entropy_against_the_average_of_all_neurons(dead_model_tables):
    d, table = dead_model_tables
    _, hists = read_histograms(d / "hist.h5")
    for hist in hists:
        raw = np.concatenate([hist.underflow[:, None], hist.counts, hist.overflow[:, None]], axis=1) + EPS
        p = raw / raw.sum(axis=1, keepdims=True)
        q = p.mean(axis=0)
        sub = table[(table.layer == hist.layer) & (table.state == hist.state)].sort_values("neuron")
        assert len(sub) == HIDDEN
        np.testing.assert_allclose(sub.kl_pq, [entropy(p[j], q) for j in range(HIDDEN)], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sub.kl_qp, [entropy(q, p[j]) for j in range(HIDDEN)], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sub.kl_sum, sub.kl_pq + sub.kl_qp)
        assert (sub.kl_pq >= 0).all() and (sub.kl_qp >= 0).all()
        np.testing.assert_allclose(distributions(hist, EPS).sum(axis=1), 1.0)


def test_identical_neurons_have_zero_divergence_and_one_that_differs_ranks_first(dead_model_tables):
    """Through the table the stage writes: neurons with the same histogram all equal the layer average (KL 0 both
    ways, ties ranked in neuron order); one whose histogram is shifted is the only one far from it, so rank 1."""
    d, _ = dead_model_tables
    _, hists = read_histograms(d / "hist.h5")
    hist = select(hists, 1, "h")
    hist.counts[:] = hist.counts[0]
    hist.underflow[:], hist.overflow[:], hist.near_zero[:] = 0, 0, 0
    table = divergence_table(hist, EPS, dead_fraction=0.9)
    np.testing.assert_allclose(table[["kl_pq", "kl_qp", "kl_sum"]].to_numpy(), 0, atol=1e-12)
    assert table["rank"].tolist() == list(range(1, HIDDEN + 1))
    hist.counts[3] = np.roll(hist.counts[0], 50)
    table = divergence_table(hist, EPS, dead_fraction=0.9).set_index("neuron")
    others = table.drop(index=3)
    assert table.loc[3, "rank"] == 1 and table.loc[3, "kl_sum"] > 10 * others.kl_sum.max() > 0
    np.testing.assert_allclose(others.kl_sum, others.kl_sum.iloc[0], rtol=1e-9)  # the rest alike, ranked in order
    assert others["rank"].tolist() == list(range(2, HIDDEN + 1))


def test_switched_off_unit_is_flagged_dead_unranked_and_listed(tiny, dead_model_tables):
    d, table = dead_model_tables
    row = table[(table.layer == 2) & (table.state == "h") & (table.neuron == tiny.dead_neuron)].iloc[0]
    assert bool(row.dead) and row.near_zero_fraction == 1.0 and pd.isna(row["rank"])
    assert row.mean_abs < 1e-6
    c_row = table[(table.layer == 2) & (table.state == "c") & (table.neuron == tiny.dead_neuron)].iloc[0]
    assert not c_row.dead and c_row["rank"] >= 1  # its cell state still moves: only h is dead
    import h5py

    with h5py.File(tiny.activations) as f:  # the same unit of the intact model is alive
        assert (np.abs(f["layer2/h"][:, tiny.dead_neuron]) <= 0.01).mean() < 0.9
    dead = pd.read_csv(d / "dead.csv")
    assert [2, "h", tiny.dead_neuron] in dead[["layer", "state", "neuron"]].values.tolist()
    assert len(dead) == table.dead.sum() and (dead.near_zero_fraction > 0.9).all()


def test_ranks_order_live_neurons_by_kl_sum(dead_model_tables):
    _, table = dead_model_tables
    for (layer, state), sub in table.groupby(["layer", "state"]):
        live = sub[~sub.dead].sort_values("rank")
        assert live["rank"].tolist() == list(range(1, len(live) + 1))
        assert (np.diff(live.kl_sum.to_numpy()) <= 0).all()
        top = ranked(table, layer, state, 3)
        assert top.neuron.tolist() == live.neuron.head(3).tolist()
        bottom = ranked(table, layer, state, 2, bottom=True)
        assert bottom.neuron.tolist() == live.neuron.tail(2).tolist()[::-1]


def test_the_job_log_names_the_divergence_settings(dead_model_tables, tmp_path, caplog):
    """The job's log names the smoothing and the dead rule, as the table's provenance record does."""
    d, _ = dead_model_tables
    with caplog.at_level("INFO", logger="lstmscope.divergence"):
        neuron_divergence(d / "hist.h5", tmp_path / "x.csv", tmp_path / "y.csv", 3e-7, 0.01, 0.75, rank_by="kl_qp")
    assert "settings: epsilon 3e-07, dead_threshold 0.01, dead_fraction 0.75, rank_by kl_qp" in caplog.text


def test_the_ranking_follows_rank_by_and_the_table_says_which(dead_model_tables, tmp_path, monkeypatch):
    d, by_sum = dead_model_tables
    assert (by_sum["rank_by"] == "kl_sum").all()
    by_pq = neuron_divergence(d / "hist.h5", tmp_path / "pq.csv", tmp_path / "dead.csv", EPS, 0.01, 0.9, rank_by="kl_pq")
    assert (read_divergence(tmp_path / "pq.csv")["rank_by"] == "kl_pq").all()
    for (layer, state), sub in by_pq.groupby(["layer", "state"]):
        live = sub[~sub.dead]
        want = live.sort_values(["kl_pq", "neuron"], ascending=[False, True]).neuron.tolist()
        assert live.sort_values("rank").neuron.tolist() == want  # 1 = the largest KL(p||q)
    np.testing.assert_array_equal(by_pq.kl_sum, by_sum.kl_sum)  # the values are the same, only the ranks differ
    assert (by_pq["rank"] != by_sum["rank"]).any()
    from lstmscope.divergence import ranking_measure

    assert ranking_measure(by_pq) == "kl_pq" and ranking_measure(by_pq.drop(columns="rank_by")) == "kl_sum"
    with pytest.raises(HistogramError, match="divergence.rank_by='kl': choose one of kl_sum, kl_pq, kl_qp"):
        neuron_divergence(d / "hist.h5", tmp_path / "x.csv", tmp_path / "y.csv", EPS, 0.01, 0.9, rank_by="kl")
    assert not (tmp_path / "x.csv").exists()
    # the top/bottom figure names the measure and its value
    import lstmscope.neuron_figures as nf

    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    _, hists = read_histograms(d / "hist.h5")
    nf.top_bottom_figure(hists, by_pq, 2, tmp_path / "t.png", tmp_path / "t.svg", "t")
    ax = kept[0].axes[0]
    assert "top 2 by KL(p‖q)" in ax.get_title()
    first = ranked(by_pq, 1, "h", 1).iloc[0]
    assert f"n{first.neuron} (#1, KL(p‖q) {first.kl_pq:.2f})" in [t.get_text() for t in ax.get_legend().get_texts()]
    # where the two ends meet (k beyond half the live neurons) each neuron is drawn once, among the top
    kept.clear()
    live = int(ranked(by_pq, 1, "h", 10**6).shape[0])
    k = live // 2 + 2
    nf.top_bottom_figure(hists, by_pq, k, tmp_path / "t.png", tmp_path / "t.svg", "t")
    top_ax, bottom_ax = kept[0].axes[:2]

    def drawn(ax):
        return {t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()} - {"layer"}

    assert len(drawn(top_ax)) == k and len(drawn(bottom_ax)) == live - k and not drawn(top_ax) & drawn(bottom_ax)
    assert f"top {k} by" in top_ax.get_title() and f"bottom {live - k} by" in bottom_ax.get_title()
    kept.clear()  # k beyond the live neurons: the bottom panel has none left, and says why
    nf.top_bottom_figure(hists, by_pq, live, tmp_path / "t.png", tmp_path / "t.svg", "t")
    bottom_ax = kept[0].axes[1]
    assert "every live neuron is among the top" in [t.get_text() for t in bottom_ax.texts]


def test_table_columns_stats_and_reread(tiny, dead_model_tables):
    d, table = dead_model_tables
    import h5py

    with h5py.File(tiny.activations) as f:
        x = f["layer1/c"][:].astype(np.float64)
    again = read_divergence(d / "divergence.csv")
    assert len(again) == LAYERS * 2 * HIDDEN
    sub = again[(again.layer == 1) & (again.state == "c")].sort_values("neuron")
    np.testing.assert_allclose(sub["mean"], x.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sub["std"], x.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sub["mean_abs"], np.abs(x).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sub["near_zero_fraction"], (np.abs(x) <= 0.01).mean(axis=0))
    assert set(again.model) == {"d0.2_r0"}


def test_bad_input_names_the_file_or_key(dead_model_tables, tmp_path):
    d, table = dead_model_tables
    with pytest.raises(HistogramError, match="dead_threshold=0.05"):
        neuron_divergence(d / "hist.h5", tmp_path / "t.csv", tmp_path / "x.csv", EPS, 0.05, 0.9)
    # relative: a threshold a few 1e-9 off is another interval too (an absolute 1e-8 let 0.01 + 5e-9 pass)
    with pytest.raises(HistogramError, match="dead_threshold=0.010000005"):
        neuron_divergence(d / "hist.h5", tmp_path / "t.csv", tmp_path / "x.csv", EPS, 0.010000005, 0.9)
    with pytest.raises(HistogramError, match="divergence.epsilon=0"):
        neuron_divergence(d / "hist.h5", tmp_path / "t.csv", tmp_path / "x.csv", 0, 0.01, 0.9)
    assert not (tmp_path / "t.csv").exists()
    with pytest.raises(HistogramError, match="nope.csv: divergence table not found"):
        read_divergence(tmp_path / "nope.csv")
    (tmp_path / "short.csv").write_text("model,text\nx,y\n")
    with pytest.raises(HistogramError, match="short.csv: missing columns"):
        read_divergence(tmp_path / "short.csv")
    with pytest.raises(HistogramError, match=r"layer 3 / state 'h' does not exist"):
        ranked(table, 3, "h", 2)


@pytest.mark.parametrize("dataset, index, value, said", [
    ("layer1/h/counts", (3, 5), -1, "layer1/h: counts of neuron 3 is -1; counts are whole numbers from 0"),
    ("layer2/c/overflow", 7, 1e9, "layer2/c: counts with underflow and overflow of neuron 7 sum to 1e"),
    ("layer1/c/near_zero", 2, 1e9, "layer1/c: near_zero of neuron 2 is 1e"),
    ("layer2/h/mean_abs", 4, np.nan, "layer2/h: mean_abs of neuron 4 is nan"),
    ("layer1/h/edges", 0, 5.0, "layer1/h: edges must rise from the first to the last"),
    ("layer1/h", "n_values", 10, "layer1/h: counts with underflow and overflow of neuron 0 sum to"),
])
def test_a_histograms_file_whose_counts_or_statistics_no_histogram_has_is_refused(dead_model_tables, tmp_path,
                                                                                  dataset, index, value, said):
    """A damaged count became an infinite KL, or a wrong n_values every neuron dead, in a table that looked
    complete (and the next stage blamed the divergence table)."""
    import shutil

    import h5py

    d, _ = dead_model_tables
    bad = tmp_path / "hist.h5"
    shutil.copy(d / "hist.h5", bad)
    with h5py.File(bad, "r+") as f:
        if index == "n_values":
            f[dataset].attrs["n_values"] = value
        else:
            f[dataset][index] = value
    with pytest.raises(HistogramError, match=re.escape(f"{bad}: {said}")):
        neuron_divergence(bad, tmp_path / "t.csv", tmp_path / "x.csv", EPS, 0.01, 0.9)
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "x.csv").exists()


def _edited(src, dst, line: int, column: str, value: str):
    """``src`` with ``column`` of ``line`` (the file's line number, header = 1) set to ``value``."""
    lines = src.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    dst.write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("column, value, message", [
    ("layer", "abc", "column layer must hold whole numbers from 1; line 5 has 'abc'"),
    ("layer", "0", "column layer must hold whole numbers from 1; line 5 has 0"),
    ("neuron", "1.5", "column neuron must hold whole numbers from 0; line 5 has 1.5"),
    ("rank", "-5", "column rank must hold whole numbers from 1; line 5 has -5"),
    ("state", "x", "column state must hold h or c; line 5 has 'x'"),
    ("kl_sum", "x", "column kl_sum must hold numbers; line 5 has 'x'"),
    ("dead", "maybe", "column dead must hold True or False; line 5 has 'maybe'"),
    ("kl_sum", "nan", r"column kl_sum must hold numbers; line 5 has no value \(an empty cell or nan\)"),
    ("mean_abs", "", r"column mean_abs must hold numbers; line 5 has no value \(an empty cell or nan\)"),
    ("dropout", "", r"column dropout must hold numbers; line 5 has no value \(an empty cell or nan\)"),
    ("kl_qp", "inf", "column kl_qp must hold finite numbers; line 5 has inf"),
    ("mean_abs", "inf", "column mean_abs must hold finite numbers; line 5 has inf"),
    ("model", "", r"column model must hold the model's name; line 5 has no value \(an empty cell or nan\)"),
    ("text", "", r"column text must hold the text's name; line 5 has no value \(an empty cell or nan\)"),
    ("dropout", "-inf", "column dropout must hold finite numbers; line 5 has -inf"),
    ("rank", "", "column rank must hold a rank for every live neuron; line 5 has <NA>"),
    ("rank", "1", r"line \d+ repeats rank 1 of layer 1 h; each live neuron of a layer and state has a rank of its own"),
    ("text", "train", r"the rows of 2 texts \(test, train\); a divergence table is one model's, of one text"),
    ("rank_by", "kl_max", "column rank_by must hold one of kl_sum, kl_pq, kl_qp; line 5 has 'kl_max'"),
    ("rank_by", "kl_pq", r"column rank_by must hold the same measure on every line \(line 2: kl_sum\); line 5 has "
                         "'kl_pq'"),
])
def test_an_edited_or_mixed_divergence_table_is_refused_naming_the_line(dead_model_tables, tmp_path, column, value,
                                                                       message):
    d, _ = dead_model_tables
    bad = _edited(d / "divergence.csv", tmp_path / "bad.csv", 5, column, value)
    with pytest.raises(HistogramError, match=f"bad.csv: {message}"):
        read_divergence(bad)


def test_a_divergence_table_with_a_neuron_twice_is_refused_and_a_whole_one_reads_typed(dead_model_tables, tmp_path):
    d, table = dead_model_tables
    lines = (d / "divergence.csv").read_text().splitlines()
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([*lines, lines[3]]) + "\n")
    first = table.iloc[2]  # line 4 of the file, repeated at its end
    with pytest.raises(HistogramError, match=f"twice.csv: line {len(lines) + 1} repeats layer {first['layer']} "
                                             f"{first['state']} neuron {first['neuron']}"):
        read_divergence(twice)
    again = read_divergence(d / "divergence.csv")
    assert again["rank"].dtype == "Int64" and again["dead"].dtype == bool
    assert again["rank"].isna().tolist() == again["dead"].tolist()  # a dead neuron is unranked, and only it
    assert again["dead"].sum() >= 1 and again["layer"].dtype == np.int64 and again["neuron"].dtype == np.int64


def test_a_divergence_table_lacking_a_neuron_is_refused_and_errors_name_the_table(dead_model_tables, tmp_path):
    """Every layer and state holds the same neurons 0..N-1: without one, a figure would count N - 1 neurons as the
    layer's; asking the table for what it lacks names it."""
    d, table = dead_model_tables
    lines = (d / "divergence.csv").read_text().splitlines()
    gone = table.iloc[3]  # line 5 of the file
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    with pytest.raises(HistogramError, match=f"^{re.escape(str(short))}: layer {gone['layer']} {gone['state']} lacks "
                                             f"neuron {gone['neuron']} "):
        read_divergence(short)
    whole = read_divergence(d / "divergence.csv")
    with pytest.raises(HistogramError, match=f"^{re.escape(str(d / 'divergence.csv'))}: layer 9 / state 'h' does "
                                             "not exist"):
        ranked(whole, 9, "h", 3)


@pytest.mark.parametrize("column", ["neuron", "layer"])
def test_a_mistyped_neuron_or_layer_is_named_on_its_own_line_not_as_others_lacking(dead_model_tables, tmp_path,
                                                                                   column):
    """One row's neuron or layer edited (a typo, a table put together by hand): the error names that row, not a
    layer and state that is whole but shorter than the stray number makes the table look."""
    d, _ = dead_model_tables
    raw = pd.read_csv(d / "divergence.csv", keep_default_na=False, dtype=str)
    width = int(raw["neuron"].astype(int).max()) + 1
    layers = raw["layer"].astype(int)
    row = int(np.flatnonzero((layers == 1) & (raw["state"] == "h") & (raw["neuron"] == "0"))[0])
    bad = tmp_path / "bad.csv"
    if column == "neuron":
        raw.loc[row, "neuron"] = str(width)  # its neuron 0 now reads as one past the last
        said = (f"^{re.escape(str(bad))}: line {row + 2}: layer 1 h neuron {width} is beyond the neurons "
                f"0-{width - 1} the other layers and states hold")
    else:
        stray = int(layers.max()) + 1
        raw.loc[row, "layer"] = str(stray)
        said = (f"^{re.escape(str(bad))}: layer {stray} h lacks neuron 1 \\(1 of the neurons 0-{width - 1} the other "
                f"layers and states hold, the first on line {row + 2}\\)")
    raw.to_csv(bad, index=False)
    with pytest.raises(HistogramError, match=said):
        read_divergence(bad)


def test_a_table_of_one_layer_and_state_lacking_a_neuron_names_the_neuron(dead_model_tables, tmp_path):
    """With one layer and state there are no others to compare: the table's largest neuron sets the width."""
    d, _ = dead_model_tables
    raw = pd.read_csv(d / "divergence.csv", keep_default_na=False, dtype=str)
    one = raw[(raw["layer"] == "1") & (raw["state"] == "h")]
    one = one[one["neuron"] != "5"]
    width = int(one["neuron"].astype(int).max()) + 1
    bad = tmp_path / "one.csv"
    one.to_csv(bad, index=False)
    with pytest.raises(HistogramError, match=f"one.csv: layer 1 h lacks neuron 5 \\({width - 1} of the neurons "
                                             f"0-{width - 1} "):
        read_divergence(bad)


def test_a_neuron_exactly_at_the_dead_fraction_is_live():
    """Dead means more than divergence.dead_fraction of its values near zero: 9 of 10 at 0.9 is not."""
    from lstmscope.divergence import divergence_table
    from lstmscope.histogram import StoredHistogram

    n, bins = 3, 4
    counts = np.array([[1, 8, 1, 0], [0, 10, 0, 0], [2, 6, 1, 1]])
    zeros = np.zeros(n)
    hist = StoredHistogram(1, "h", counts, zeros.astype(int), zeros.astype(int), np.array([9, 10, 8]), zeros, zeros,
                           zeros, zeros, zeros, np.linspace(-1, 1, bins + 1), 10, 0.01)
    table = divergence_table(hist, EPS, dead_fraction=0.9)
    assert table["near_zero_fraction"].tolist() == [0.9, 1.0, 0.8]
    assert table["dead"].tolist() == [False, True, False]
    assert table["rank"].isna().tolist() == [False, True, False]
    # a neuron with no values at all has no distribution: named, not divided by zero
    hist.counts[2] = 0
    with pytest.raises(HistogramError, match=r"^layer1/h: empty histogram for neuron\(s\) \[2\]$"):
        divergence_table(hist, EPS, dead_fraction=0.9)


def test_values_outside_the_interval_count_as_slots_smoothed_like_every_bin(tiny, tmp_path):
    """A cell interval narrower than some neurons' values: their under/overflow slots hold counts, the other
    neurons' are empty; KL still equals scipy's on the smoothed slots, and is finite for every neuron."""
    import h5py

    with h5py.File(tiny.activations) as f:
        reach = np.abs(f["layer2/c"][:]).max(axis=0)
    half = float(np.floor(np.median(reach) * 100) / 100)  # about half the neurons of layer 2's c reach past it
    neuron_histograms(tiny.activations, tmp_path / "h.h5", tmp_path / "r.csv", 0.01, [-half, half], 0.01)
    table = neuron_divergence(tmp_path / "h.h5", tmp_path / "d.csv", tmp_path / "dead.csv", epsilon=EPS,
                              dead_threshold=0.01, dead_fraction=0.9)
    hist = select(read_histograms(tmp_path / "h.h5")[1], 2, "c")
    outside = (hist.underflow + hist.overflow) > 0
    assert 0 < outside.sum() < HIDDEN
    raw = np.concatenate([hist.underflow[:, None], hist.counts, hist.overflow[:, None]], axis=1) + EPS
    p = raw / raw.sum(axis=1, keepdims=True)
    q = p.mean(axis=0)
    sub = table[(table.layer == 2) & (table.state == "c")].sort_values("neuron")
    np.testing.assert_allclose(sub.kl_pq, [entropy(p[j], q) for j in range(HIDDEN)], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sub.kl_qp, [entropy(q, p[j]) for j in range(HIDDEN)], rtol=1e-9, atol=1e-12)
    assert np.isfinite(table[["kl_pq", "kl_qp", "kl_sum"]].to_numpy()).all()

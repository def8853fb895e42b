"""The LSTM's gates on the small real model: the statistics against the LSTM equations stepped by hand, the check
against the dump, the table's reader and summary, the figures, the errors."""
from __future__ import annotations

import shutil
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lstmscope import gate_figures
from lstmscope.activations import dump_activations
from lstmscope.gate_figures import gate_figure, gates_vs_dropout
from lstmscope.gate_summary import read_divergences, read_gates, summarise
from lstmscope.gate_table import GATES
from lstmscope.gates import GateError, fixed_mmap_threshold, gate_statistics, gate_values
from lstmscope.model import load_checkpoint

from conftest import assert_each_refused, kept_figures
from neurons_support import HIDDEN, LAYERS, TEXT, divergence_csv, tiny  # noqa: F401  (fixtures)

EXTRA = {"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0}


def reference_gates(model, ids) -> list[np.ndarray]:
    """Per layer, the gates (T, 4, N: i, f, g, o) of the LSTM equations stepped by hand in float64 from the zero
    state."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    L, N = model.config.layers, model.config.hidden_size
    h = [torch.zeros(N, dtype=torch.float64) for _ in range(L)]
    c = [torch.zeros(N, dtype=torch.float64) for _ in range(L)]
    out = [[] for _ in range(L)]
    for t in range(len(ids)):
        x = sd["encoder.weight"][ids[t]]
        for k in range(L):
            z = (sd[f"rnn.weight_ih_l{k}"] @ x + sd[f"rnn.bias_ih_l{k}"]
                 + sd[f"rnn.weight_hh_l{k}"] @ h[k] + sd[f"rnn.bias_hh_l{k}"])
            zi, zf, zg, zo = z.chunk(4)
            i, f, g, o = torch.sigmoid(zi), torch.sigmoid(zf), torch.tanh(zg), torch.sigmoid(zo)
            c[k] = f * c[k] + i * g
            h[k] = o * torch.tanh(c[k])
            out[k].append(torch.stack([i, f, g, o]).numpy())
            x = h[k]
    return [np.array(layer) for layer in out]


@pytest.fixture(scope="module")
def reference(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:].astype(np.int64)
    return model, ids, reference_gates(model, ids)


@pytest.fixture(scope="module")
def table(tiny, tmp_path_factory):
    return gate_statistics(tiny.checkpoint, tiny.activations, tmp_path_factory.mktemp("gates") / "gates.csv", 0.1)


def thresholds(saturation: float) -> tuple[np.ndarray, np.ndarray]:
    """Shut below / wide open above, per gate (i, f, g, o)."""
    return (np.array([saturation, saturation, -1 + 2 * saturation, saturation]),
            np.array([1 - saturation, 1 - saturation, 1 - 2 * saturation, 1 - saturation]))


@pytest.mark.parametrize("saturation", [0.1, 0.3, 0.45])
def test_the_statistics_are_those_of_the_lstm_equations_stepped_by_hand(tiny, reference, tmp_path, saturation):
    model, ids, gates = reference
    table = gate_statistics(tiny.checkpoint, tiny.activations, tmp_path / "g.csv", saturation, block_tokens=64)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "g.csv"), table, rtol=1e-5, check_exact=False,
                                  check_dtype=False)
    T = len(ids)
    low, high = thresholds(saturation)
    assert len(table) == LAYERS * HIDDEN
    some_saturated = 0
    for k in range(LAYERS):
        rows = table[table["layer"] == k + 1].sort_values("neuron")
        assert rows["neuron"].tolist() == list(range(HIDDEN))
        ref = gates[k]                                                         # (T, 4, N)
        # a value within 1e-5 of a threshold may fall on either side of it in float32
        near_low = (np.abs(ref - low[None, :, None]) < 1e-5).sum(axis=0)
        near_high = (np.abs(ref - high[None, :, None]) < 1e-5).sum(axis=0)
        for j, gate in enumerate(GATES):
            np.testing.assert_allclose(rows[f"{gate}_mean"], ref[:, j].mean(axis=0), atol=1e-5)
            left = (ref[:, j] < low[j]).sum(axis=0)
            right = (ref[:, j] > high[j]).sum(axis=0)
            assert (np.abs(np.round(rows[f"{gate}_left"].to_numpy() * T) - left) <= near_low[j]).all(), gate
            assert (np.abs(np.round(rows[f"{gate}_right"].to_numpy() * T) - right) <= near_high[j]).all(), gate
            some_saturated += int(left.sum() + right.sum())
        timescale = 1 / (-np.log(ref[:, 1])).mean(axis=0)
        np.testing.assert_allclose(rows["forget_timescale"], timescale, rtol=1e-4)
    assert some_saturated > 0, "the thresholds must be tested on gates that cross them"
    assert set(table["model"]) == {"d0.2_r0"} and set(table["text"]) == {"test"} and set(table["dropout"]) == {0.2}
    assert set(table["saturation"]) == {saturation}


def test_gate_values_of_a_block_are_the_equations(tiny, reference):
    """The first 30 steps of layer 1 from the batched products, given the file's h before each step."""
    model, ids, gates = reference
    rnn = model.rnn
    with h5py.File(tiny.activations) as f:
        h1 = f["layer1/h"][:30]
    h_prev = torch.cat([torch.zeros(1, HIDDEN), torch.from_numpy(h1[:-1])])
    with torch.no_grad():
        x = model.encoder.weight[torch.from_numpy(ids[:30])]
        got, neg_log_f = gate_values(x, h_prev, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0)
    np.testing.assert_allclose(got.numpy(), gates[0][:30], atol=1e-5)
    np.testing.assert_allclose(neg_log_f.numpy(), -np.log(gates[0][:30, 1]), rtol=1e-4)
    assert neg_log_f.dtype == torch.float64


def test_the_block_size_does_not_change_the_table(tiny, table, tmp_path):
    small = gate_statistics(tiny.checkpoint, tiny.activations, tmp_path / "g.csv", 0.1, block_tokens=7)
    pd.testing.assert_frame_equal(small, table, rtol=1e-6, check_exact=False)


def test_a_unit_whose_output_gate_never_opens_is_shut_at_every_token(tiny, tmp_path):
    """The shared model's dead twin: unit 5 of layer 2 has its output gate's bias at -30."""
    activations = tmp_path / "dead.h5"
    dump_activations(tiny.dead_checkpoint, tiny.vocabulary, tiny.split, TEXT, activations, chunk_tokens=64,
                     model_info=EXTRA)
    table = gate_statistics(tiny.dead_checkpoint, activations, tmp_path / "g.csv", 0.1)
    layer2 = table[table["layer"] == 2].set_index("neuron")
    assert layer2.loc[tiny.dead_neuron, "output_left"] == 1.0
    assert layer2.loc[tiny.dead_neuron, "output_mean"] < 1e-10
    assert layer2.loc[tiny.dead_neuron, "output_right"] == 0.0
    others = layer2.drop(index=tiny.dead_neuron)
    assert (others["output_mean"] > 1e-3).all()


def test_a_float16_file_gives_nearly_the_same_statistics(tiny, table, tmp_path):
    activations = tmp_path / "half.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, activations, chunk_tokens=64,
                     model_info=EXTRA, dtype="float16")
    half = gate_statistics(tiny.checkpoint, activations, tmp_path / "g.csv", 0.1)
    for gate in GATES:
        np.testing.assert_allclose(half[f"{gate}_mean"], table[f"{gate}_mean"], atol=5e-3)
        np.testing.assert_allclose(half[f"{gate}_left"], table[f"{gate}_left"], atol=0.02)
        np.testing.assert_allclose(half[f"{gate}_right"], table[f"{gate}_right"], atol=0.02)
    np.testing.assert_allclose(half["forget_timescale"], table["forget_timescale"], rtol=0.02)


def test_a_file_of_another_checkpoint_is_refused(tiny, tmp_path):
    with pytest.raises(GateError, match=r"activations.h5 was dumped from another checkpoint than .*dead.pt"):
        gate_statistics(tiny.dead_checkpoint, tiny.activations, tmp_path / "g.csv", 0.1)
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("layer,state", [(1, "c"), (2, "h")])
def test_a_file_whose_states_the_gates_do_not_give_is_refused(tiny, tmp_path, layer, state):
    """The checkpoint's digest matches, but one value of c or h was changed: the gates give other states."""
    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f[f"layer{layer}/{state}"][200, 3] += 0.05
    with pytest.raises(GateError, match=rf"damaged.h5: layer {layer}'s gates, .* differ from the file's by "
                                        r".*dump it again"):
        gate_statistics(tiny.checkpoint, damaged, tmp_path / "g.csv", 0.1)
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("key,value", [("layer2/h", np.nan), ("layer1/c", np.inf), ("layer1/h", -np.inf)])
def test_a_state_that_is_not_finite_is_refused_by_its_place(tiny, tmp_path, key, value):
    """A NaN would pass every comparison: the check of c and h and the shares alike."""
    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f[key][300, 7] = value
    with pytest.raises(GateError, match=rf"damaged.h5: {key} of token 300, unit 7 is {value:g}, which no LSTM state "
                                        r"is \(the file is damaged; dump it again\)"):
        gate_statistics(tiny.checkpoint, damaged, tmp_path / "g.csv", 0.1, block_tokens=128)
    assert not (tmp_path / "g.csv").exists()


def test_a_file_of_an_unknown_dtype_is_refused(tiny, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f.attrs["dtype"] = "bfloat16"
    with pytest.raises(GateError, match=r"damaged.h5: attribute dtype is 'bfloat16', not one of float32, float16"):
        gate_statistics(tiny.checkpoint, damaged, tmp_path / "g.csv", 0.1)


def test_missing_inputs_and_settings_are_named(tiny, tmp_path):
    for saturation in (0.0, 0.5, -0.1, 0.7):
        with pytest.raises(GateError, match=rf"gates.saturation={saturation}: must be between 0 and 0.5"):
            gate_statistics(tiny.checkpoint, tiny.activations, tmp_path / "g.csv", saturation)
    with pytest.raises(GateError, match=r"nothere.pt: checkpoint not found"):
        gate_statistics(tmp_path / "nothere.pt", tiny.activations, tmp_path / "g.csv", 0.1)
    with pytest.raises(ValueError, match=r"nothere.h5: activations file not found"):
        gate_statistics(tiny.checkpoint, tmp_path / "nothere.h5", tmp_path / "g.csv", 0.1)
    assert not (tmp_path / "g.csv").exists()


# --------------------------------------------------------------------------- the table read back, the summary


def test_the_reader_refuses_what_no_gate_table_holds(table, tmp_path):
    good = tmp_path / "good.csv"
    table.to_csv(good, index=False)
    assert len(read_gates([good])) == len(table)
    cases = {
        "share": (table.assign(forget_right=[1.5] + [0.0] * (len(table) - 1)), r"column forget_right must hold "
                  r"shares \(0 to 1\); line 2 has 1.5"),
        "twice": (pd.concat([table, table.iloc[[3]]]), r"line 26 repeats layer 1 neuron 3"),
        "empty": (table.assign(input_mean=[np.nan] + [0.5] * (len(table) - 1)), r"column input_mean .* line 2"),
        "timescale": (table.assign(forget_timescale=[0.0] + [1.0] * (len(table) - 1)),
                      r"column forget_timescale must hold positive numbers; line 2 has 0"),
        "missing": (table.drop(columns=["cell_left"]), r"cell_left"),
        "mixed": (table.assign(saturation=[0.2] + [0.1] * (len(table) - 1)), r"column saturation must hold one "
                  r"saturation \(line 2 has 0.2\); line 3 has 0.1"),
        "saturation": (table.assign(saturation=0.5), r"column saturation must hold numbers between 0 and 0.5; line 2 "
                       r"has 0.5"),
    }
    assert_each_refused(cases, tmp_path, read_gates)
    other = tmp_path / "other.csv"
    table.assign(text="train").to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other.csv is a gate table of text train, .*good.csv of text test"):
        read_gates([good, other])
    table.assign(saturation=0.2).to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other.csv is a gate table of saturation 0.2, .*good.csv of saturation 0.1: "
                                         r"give the tables of one saturation"):
        read_gates([good, other])
    with pytest.raises(ValueError, match=r"good.csv is a second gate table of model d0.2_r0: give one per model"):
        read_gates([good, good])
    table[~((table["layer"] == 2) & (table["neuron"] == 4))].to_csv(other, index=False)
    with pytest.raises(ValueError, match=rf"other.csv: layer 2 holds {HIDDEN - 1} units, not the units 0-{HIDDEN - 1} "
                                         r"of the widest layer \(missing 4\): the table is damaged"):
        read_gates([other])


def test_the_summary_per_layer_and_gate(table):
    summary = summarise(table)
    assert len(summary) == LAYERS * len(GATES)
    for r in summary.itertuples():
        rows = table[table["layer"] == r.layer]
        assert r.units == HIDDEN
        assert r.mean == pytest.approx(np.mean(rows[f"{r.gate}_mean"]))
        assert r.left == pytest.approx(np.mean(rows[f"{r.gate}_left"]))
        assert r.right == pytest.approx(np.mean(rows[f"{r.gate}_right"]))
        assert r.units_left == sum(v > 0.5 for v in rows[f"{r.gate}_left"])
        assert r.units_right == sum(v > 0.5 for v in rows[f"{r.gate}_right"])
        if r.gate == "forget":
            values = sorted(rows["forget_timescale"])
            assert r.timescale_median == pytest.approx((values[5] + values[6]) / 2)
            assert r.timescale_max == values[-1]
            assert values[9] <= r.timescale_p90 <= values[10]
        else:
            assert np.isnan(r.timescale_median) and np.isnan(r.timescale_p90) and np.isnan(r.timescale_max)


# --------------------------------------------------------------------------- figures


@pytest.fixture
def drawn(monkeypatch):
    """The figures the module would save, kept open to be read, and closed after the test."""
    yield from kept_figures(monkeypatch, gate_figures)


def test_the_saturation_plot_draws_every_unit(tiny, table, tmp_path, drawn):
    kept = drawn
    path = tmp_path / "g.csv"
    table.to_csv(path, index=False)
    gate_figure(path, tmp_path / "f.png", tmp_path / "f.svg")
    axes = kept[0].axes
    assert [ax.get_title().split("\n")[0] for ax in axes] == [gate_figures.GATE_NAME[g] for g in GATES]
    assert "low < \u22120.8, high > 0.8" in axes[2].get_title() and "shut < 0.1, wide open > 0.9" in axes[1].get_title()
    assert "(saturation 0.1)" in kept[0].texts[0].get_text()
    for ax, gate in zip(axes, GATES):
        assert len(ax.collections) == LAYERS
        for layer, points in zip((1, 2), ax.collections):
            rows = table[table["layer"] == layer]
            np.testing.assert_allclose(points.get_offsets(), rows[[f"{gate}_left", f"{gate}_right"]].to_numpy())


def test_the_figure_across_models(table, divergence_csv, tmp_path, drawn):
    """Two models (the second the first with its forget gates shut more often): a point per model at its dropout
    in each panel, the table sorted by layer, gate and dropout."""
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    table.to_csv(paths[0], index=False)
    table.assign(model="d0.8_r0", dropout=0.8, forget_left=table["forget_left"] / 2 + 0.5,
                 forget_timescale=table["forget_timescale"] * 2).to_csv(paths[1], index=False)
    kept = drawn
    divergence = [tmp_path / "da.csv", tmp_path / "db.csv"]
    pd.read_csv(divergence_csv).to_csv(divergence[0], index=False)
    pd.read_csv(divergence_csv).assign(model="d0.8_r0", dropout=0.8).to_csv(divergence[1], index=False)
    summary = gates_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg",
                               divergence_paths=divergence, top_k=2)
    assert summary[["layer", "gate", "model"]].values.tolist() == [
        [layer, gate, model] for layer in (1, 2) for gate in GATES for model in ("d0.2_r0", "d0.8_r0")]
    written = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_allclose(written["left"], summary["left"], rtol=1e-5)
    axes = kept[0].axes
    # each gate's panel says what counts as saturated, as the saturation plot does (the table's saturation, 0.1)
    assert [ax.get_title() for ax in axes[:len(GATES)]] == [
        f"{gate_figures.GATE_NAME[g]}\n" + ("low < \u22120.8, high > 0.8" if g == "cell" else
                                             "shut < 0.1, wide open > 0.9") for g in GATES]
    forget = axes[GATES.index("forget")]
    solid = [line for line in forget.get_lines() if line.get_linestyle() == "-"]
    assert len(solid) == LAYERS
    for layer, line in zip((1, 2), solid):
        rows = summary[(summary["layer"] == layer) & (summary["gate"] == "forget")]
        assert list(line.get_xdata()) == [0.2, 0.8]
        np.testing.assert_allclose(line.get_ydata(), rows["left"])
    assert rows["left"].iloc[1] >= 0.5
    timescale = axes[-1]
    for style, column in (("-", "timescale_median"), ("--", "timescale_top_kl")):  # the units', the top-KL neurons'
        lines = [line for line in timescale.get_lines() if line.get_linestyle() == style]
        assert len(lines) == LAYERS
        for layer, line in zip((1, 2), lines):
            rows = summary[(summary["layer"] == layer) & (summary["gate"] == "forget")]
            np.testing.assert_allclose(line.get_ydata(), rows[column])
            assert line.get_ydata()[1] == pytest.approx(2 * line.get_ydata()[0])
    assert timescale.get_yscale() == "log"


def test_the_q_values_are_over_every_model_and_layer_of_the_table(table, divergence_csv):
    """Two models, two layers: four tests, one family. The p-values are scipy's Spearman tests on the tables
    themselves (the second model's ranking measure perturbed, so that its p-values differ: the first of 20
    perturbations that makes the first model's q-values in the family of four differ from those of its own two), and
    the q-values scipy's Benjamini-Hochberg over all four, not over each model alone."""
    from scipy.stats import false_discovery_control, spearmanr

    from lstmscope.divergence import ranking_measure

    divergence = pd.read_csv(divergence_csv)
    measure = ranking_measure(divergence)

    def tests(other: pd.DataFrame) -> tuple[list[tuple[str, int]], list[float]]:
        keys, p = [], []
        for model, ranking in (("d0.2_r0", divergence), ("d0.8_r0", other)):
            for layer in (1, 2):
                live = ranking[(ranking["layer"] == layer) & (ranking["state"] == "c") & ranking["rank"].notna()]
                timescale = table[table["layer"] == layer].set_index("neuron")["forget_timescale"]
                keys.append((model, layer))
                p.append(spearmanr(live[measure], timescale.loc[live["neuron"]]).pvalue)
        return keys, p

    for seed in range(3, 23):
        other = divergence.assign(model="d0.8_r0")
        other[measure] = other[measure] + np.random.default_rng(seed).normal(0, other[measure].std(), len(other))
        keys, p = tests(other)
        q = false_discovery_control(p, method="bh")
        alone = false_discovery_control(p[:2], method="bh")  # the first model's family alone
        if len(set(np.round(p, 12))) == 4 and not np.allclose(q[:2], alone):  # four different tests, told apart
            break
    else:
        pytest.fail("no perturbation of the second model's ranking told the family of four from the first model's")
    both = pd.concat([table, table.assign(model="d0.8_r0", dropout=0.8)], ignore_index=True)
    summary = summarise(both, pd.concat([divergence, other]))
    forget = summary[summary["gate"] == "forget"].set_index(["model", "layer"])
    for key, p_value, q_value in zip(keys, p, q):
        assert forget.loc[key, "timescale_kl_p"] == pytest.approx(p_value, rel=1e-9)
        assert forget.loc[key, "timescale_kl_q"] == pytest.approx(q_value, rel=1e-9)
    assert summary.loc[summary["gate"] != "forget", "timescale_kl_q"].isna().all()


def test_benjamini_hochberg_by_hand():
    """Four p-values (and an untested row): ranked 0.01, 0.03, 0.04, 0.20, each times 4 / its rank (0.04, 0.06,
    0.0533, 0.20), then the smallest of itself and every larger one's."""
    from lstmscope.gate_summary import benjamini_hochberg

    q = benjamini_hochberg(pd.Series([0.01, 0.04, np.nan, 0.03, 0.20]))
    np.testing.assert_allclose(q.to_numpy(), [0.04, 0.16 / 3, np.nan, 0.16 / 3, 0.20])
    assert benjamini_hochberg(pd.Series([np.nan, np.nan])).isna().all()


def ranked_by_timescale(divergence: pd.DataFrame, table: pd.DataFrame, sign: float) -> pd.DataFrame:
    """The divergence table with every c neuron's kl_sum set to sign x its forget timescale and ranked by it (the
    dead ones left unranked)."""
    out = divergence.copy()
    for layer in (1, 2):
        rows = (out["layer"] == layer) & (out["state"] == "c")
        timescale = table[table["layer"] == layer].set_index("neuron")["forget_timescale"]
        out.loc[rows, "kl_sum"] = sign * timescale.loc[out.loc[rows, "neuron"]].to_numpy()
        live = rows & out["rank"].notna()
        out.loc[live, "rank"] = out.loc[live, "kl_sum"].rank(ascending=False, method="first")
    return out


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_timescale_of_the_top_kl_cell_neurons(table, divergence_csv, sign):
    """A ranking that follows the timescale exactly: the top 3 are the 3 longest (shortest, reversed) of the live c
    neurons, the rank correlation +1 (-1); a dead neuron (unranked: c neuron 0 of layer 2 made one here, whichever
    the shared model has) counts in neither."""
    divergence = pd.read_csv(divergence_csv)
    made_dead = (divergence["layer"] == 2) & (divergence["state"] == "c") & (divergence["neuron"] == 0)
    divergence.loc[made_dead, "rank"] = np.nan
    divergence.loc[made_dead, "dead"] = True
    dead = divergence[made_dead]
    ranked = ranked_by_timescale(divergence, table, sign)
    summary = summarise(table, ranked, top_k=3).set_index(["layer", "gate"])
    for layer in (1, 2):
        live = set(ranked[(ranked["layer"] == layer) & (ranked["state"] == "c") & ranked["rank"].notna()]["neuron"])
        rows = table[(table["layer"] == layer) & table["neuron"].isin(live)]
        timescales = sorted(rows["forget_timescale"], reverse=sign > 0)
        row = summary.loc[(layer, "forget")]
        assert row["timescale_top_kl"] == pytest.approx(timescales[1])   # the median of the top 3
        assert row["timescale_kl_rho"] == pytest.approx(sign)
        assert row["timescale_kl_p"] < 1e-6
        assert summary.loc[(layer, "input"), ["timescale_top_kl", "timescale_kl_rho", "timescale_kl_p",
                                              "timescale_kl_q"]].isna().all()
    # the dead neuron with the longest timescale of all would change the top 3 if it counted
    longest = table.assign(forget_timescale=np.where((table["layer"] == dead["layer"].iloc[0])
                                                     & (table["neuron"] == dead["neuron"].iloc[0]), 1e6,
                                                     table["forget_timescale"]))
    again = summarise(longest, ranked_by_timescale(divergence, table, sign), top_k=3).set_index(["layer", "gate"])
    assert again.loc[(2, "forget"), "timescale_top_kl"] == summary.loc[(2, "forget"), "timescale_top_kl"]
    assert summarise(table)["timescale_top_kl"].isna().all()          # without divergence tables


def test_the_divergence_tables_must_be_the_models(table, divergence_csv, tmp_path):
    gates = tmp_path / "gates.csv"
    table.to_csv(gates, index=False)
    read = read_gates([gates])
    assert len(read_divergences([divergence_csv], read)) == LAYERS * 2 * HIDDEN
    other = tmp_path / "other.csv"
    pd.read_csv(divergence_csv).assign(model="d0.8_r0").to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"no divergence table of model d0.2_r0 given \(have: d0.8_r0\)"):
        read_divergences([other], read)
    with pytest.raises(ValueError, match=r"d.csv and .*d.csv are both divergence tables of model "
                                         r"d0.2_r0: give one"):
        read_divergences([divergence_csv, divergence_csv], read)
    pd.read_csv(divergence_csv).assign(model="d0.8_r0").to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other.csv is the divergence table of model d0.8_r0, which no gate table "
                                         r"given is of"):
        read_divergences([divergence_csv, other], read)
    one_layer = read[read["layer"] == 1]
    with pytest.raises(ValueError, match=r"d.csv has layers 1, 2, the gate table of model d0.2_r0 layers 1: the "
                                         r"tables of another model\?"):
        read_divergences([divergence_csv], one_layer)
    pd.read_csv(divergence_csv).assign(text="train").to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other.csv is the divergence table of model d0.2_r0 / text train, but its "
                                         r"gate table is of d0.2_r0 / test"):
        read_divergences([other], read)


def test_fewer_live_cell_neurons_than_top_k(table, divergence_csv):
    """Two live c neurons in layer 1: the top-KL median is theirs, no correlation (fewer than 3); none live: all
    empty."""
    divergence = pd.read_csv(divergence_csv)
    c1 = (divergence["layer"] == 1) & (divergence["state"] == "c")
    keep = divergence[c1 & divergence["rank"].notna()].sort_values("rank")["neuron"].head(2).tolist()
    few = divergence.copy()
    few.loc[c1 & ~few["neuron"].isin(keep), "rank"] = np.nan
    row = summarise(table, few, top_k=5).set_index(["layer", "gate"]).loc[(1, "forget")]
    timescale = table[table["layer"] == 1].set_index("neuron")["forget_timescale"]
    assert row["timescale_top_kl"] == pytest.approx(np.median(timescale.loc[keep]))
    assert np.isnan(row["timescale_kl_rho"]) and np.isnan(row["timescale_kl_p"])
    none = divergence.copy()
    none.loc[c1, "rank"] = np.nan
    row = summarise(table, none, top_k=5).set_index(["layer", "gate"]).loc[(1, "forget")]
    assert row[["timescale_top_kl", "timescale_kl_rho", "timescale_kl_p"]].isna().all()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_fixed_mmap_threshold():
    """Without it the job's memory grew with the text (README, resources): glibc must accept the setting."""
    assert fixed_mmap_threshold() is True


def test_a_log_axis_of_less_than_a_decade_has_ticks_to_read_it_by():
    """Timescales of 0.7 to 2.6 tokens had labels at 1 and 2 only (1, 2, 5 of each decade), and 0.72 to 3.2 none
    below 1: within a factor of 5 the axis is labelled at 1, 1.5, 2, 3, ..., 8 of a decade, within a decade at 1,
    1.5, 2, 3, 5, 7, over decades less densely; labels as plain numbers."""
    from lstmscope.gate_figures import _log_ticks, plt

    for (low, high), expected in (((0.7, 2.6), [0.7, 0.8, 1, 1.5, 2]), ((0.72, 3.2), [0.8, 1, 1.5, 2, 3]),
                                  ((0.3, 2.6), [0.3, 0.5, 0.7, 1, 1.5, 2]), ((0.3, 20), [0.5, 1, 2, 5, 10, 20]),
                                  ((0.5, 400), [1, 10, 100])):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [low, high])
        ax.set_ylim(low, high)
        _log_ticks(ax)
        fig.canvas.draw()
        shown = [t for t in ax.get_yticks() if low <= t <= high]
        assert shown == pytest.approx(expected), (low, high)
        labels = [t.get_text() for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high]
        assert labels == [f"{v:g}" for v in expected]
        plt.close(fig)

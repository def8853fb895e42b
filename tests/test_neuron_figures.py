"""Neuron figures (Fig. 5.1, 5.2/5.5, 5.6, 5.7) from real histograms and divergence tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from lstmscope.activations import dump_activations
from lstmscope.divergence import neuron_divergence
from lstmscope.histogram import HistogramError, neuron_histograms, read_histograms, select
from lstmscope.neuron_figures import density, mean_abs_table, mean_abs_vs_dropout, neuron_figures

from neurons_support import HIDDEN, LAYERS, TEXT, tiny  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def closed_figures():
    """Figures a test keeps (``save_figure`` replaced to inspect them) are closed after it."""
    yield
    from lstmscope.figures import plt

    plt.close("all")


@pytest.fixture(scope="module")
def two_models(tiny, tmp_path_factory):
    """Histograms and divergence tables of the intact model and of the one with a dead unit."""
    d = tmp_path_factory.mktemp("figures")
    out = {}
    for name, ckpt, dropout in (("d0.2_r0", tiny.checkpoint, 0.2), ("d0.5_r0", tiny.dead_checkpoint, 0.5)):
        act = d / f"{name}.h5"
        dump_activations(ckpt, tiny.vocabulary, tiny.split, TEXT, act, chunk_tokens=64,
                         model_info={"name": name, "dropout": dropout})
        neuron_histograms(act, d / f"{name}-h.h5", d / f"{name}-r.csv", 0.01, [-0.6, 0.6], 0.01)
        neuron_divergence(d / f"{name}-h.h5", d / f"{name}-d.csv", d / f"{name}-dead.csv", 1e-10, 0.01, 0.9)
        out[name] = (d / f"{name}-h.h5", d / f"{name}-d.csv")
    return out


def test_density_integrates_to_the_share_inside_the_interval(two_models):
    _, hists = read_histograms(two_models["d0.2_r0"][0])
    c = select(hists, 1, "c")
    inside = c.counts.sum() / (c.n_values * c.neurons)
    assert inside < 1  # the test interval [-0.6, 0.6] cuts some cell states
    assert (density(c) * np.diff(c.edges)).sum() == pytest.approx(inside)
    per_neuron = (density(c, np.arange(HIDDEN)) * np.diff(c.edges)).sum(axis=1)
    np.testing.assert_allclose(per_neuron, c.counts.sum(axis=1) / c.n_values)


def test_neuron_figures_written_as_png_and_svg(two_models, tmp_path):
    hist, div = two_models["d0.5_r0"]
    outputs = {k: (tmp_path / f"{k}.png", tmp_path / f"{k}.svg") for k in ("distributions", "top_bottom", "dead")}
    neuron_figures(hist, div, top_k=3, dead_threshold=0.01, dead_fraction=0.9, outputs=outputs, dpi=50)
    for png, svg in outputs.values():
        img = mpimg.imread(png)
        assert img.shape[0] > 100 and img.shape[1] > 200
        assert "<svg" in svg.read_text()[:500]


def test_dead_neuron_figure_draws_the_deadest_unit(two_models, tiny, tmp_path, monkeypatch):
    """Fig. 5.6 draws the neuron with the largest share of values within ±0.01 (ties: the first by layer, state,
    neuron) and counts the dead (this tiny model has dead units of its own; the damaged one's switched-off h is
    among its fully dead, a tie the order decides): the figure's curve is that neuron's histogram."""
    import lstmscope.neuron_figures as nf
    from lstmscope.divergence import read_divergence

    drawn = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, png, svg, dpi=150: drawn.append(fig))
    unit = {}
    for name in ("d0.2_r0", "d0.5_r0"):
        hist, div = two_models[name]
        _, hists = read_histograms(hist)
        table = read_divergence(div)
        info = nf.dead_neuron_figure(hists, table, tmp_path / f"{name}.png", tmp_path / f"{name}.svg", "t", 0.01,
                                     0.9, dpi=50)
        deadest = table[table.near_zero_fraction == table.near_zero_fraction.max()]
        first = min(zip(deadest.layer, deadest.state, deadest.neuron))
        assert (info["layer"], info["state"], info["neuron"]) == first
        layer, state, neuron = first
        h = select(hists, layer, state)
        want = h.counts[neuron] / (h.n_values * np.diff(h.edges))  # its density, from its counts
        ax = drawn[-1].axes[0]
        named = f"layer {layer}, {'hidden' if state == 'h' else 'cell'} state {state}, neuron {neuron}"
        assert ax.get_title().startswith(named) and not ax.get_title()[len(named)].isdigit(), ax.get_title()
        curve = [line for line in ax.get_lines() if line.get_label() == f"neuron {neuron}"]
        assert len(curve) == 1 and np.allclose(curve[0].get_ydata()[:-1], want), (name, first)
        assert np.allclose(curve[0].get_xdata(), h.edges)
        assert info["dead"] == (deadest.near_zero_fraction.iloc[0] > 0.9)
        assert info["dead_count"] == int((table.near_zero_fraction > 0.9).sum()) > 0
        unit[name] = table[(table.layer == 2) & (table.state == "h") & (table.neuron == tiny.dead_neuron)].iloc[0]
    assert unit["d0.5_r0"].near_zero_fraction == 1.0 and unit["d0.2_r0"].near_zero_fraction < 0.9

@pytest.mark.parametrize("low,high,sign", [(-0.997, -8.17e-05, ", all below 0"), (-0.5, 0.25, "")])
def test_with_no_dead_neuron_the_title_says_what_is_shown_not_the_most_nearly_dead(two_models, tmp_path,
                                                                                  monkeypatch, low, high, sign):
    """With no neuron dead, the neuron drawn is the one with the largest share within ±0.01: often one of one sign
    resting at 0 (range -0.997..0), not a spike at 0. The title names the share and the range, not a "most nearly
    dead" neuron."""
    import lstmscope.neuron_figures as nf
    from lstmscope.divergence import read_divergence

    hist, div = two_models["d0.2_r0"]
    _, hists = read_histograms(hist)
    table = read_divergence(div)
    table["near_zero_fraction"] *= 0.362 / table["near_zero_fraction"].max()  # none dead: at most 36.2 % near 0
    table["dead"] = False
    pick = table.sort_values(["near_zero_fraction", "layer", "state", "neuron"],
                             ascending=[False, True, True, True]).index[0]
    table.loc[pick, ["min", "max"]] = [low, high]
    layer, state, neuron = table.loc[pick, ["layer", "state", "neuron"]]
    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    info = nf.dead_neuron_figure(hists, table, tmp_path / "d.png", tmp_path / "d.svg", "t", 0.01, 0.9)
    assert (info["layer"], info["state"], info["neuron"], info["dead"]) == (layer, state, neuron, False)
    values = f"{low:.3g} to {high:.3g}".replace("-", "\u2212")
    assert kept[0].axes[0].get_title() == (
        f"layer {layer}, {nf.STATE_NAMES[state]}, neuron {neuron} (values {values}{sign})\n"
        "largest share of values within ±0.01: 36.2%; no neuron is dead (> 90%)")
    assert "nearly dead" not in kept[0].axes[0].get_title()


def test_a_dead_neurons_title_says_it_is_dead(two_models, tmp_path, monkeypatch):
    import lstmscope.neuron_figures as nf
    from lstmscope.divergence import read_divergence

    hist, div = two_models["d0.5_r0"]
    _, hists = read_histograms(hist)
    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    info = nf.dead_neuron_figure(hists, read_divergence(div), tmp_path / "d.png", tmp_path / "d.svg", "t", 0.01, 0.9)
    assert info["dead"]
    assert kept[0].axes[0].get_title().endswith(": dead: 100.0% of values within ±0.01 (> 90%)")


def drawn_figures(hist, div, tmp_path, monkeypatch) -> list:
    """The figures neuron_figures draws of a model's histograms and divergence table (top 3), kept open, not saved."""
    import lstmscope.neuron_figures as nf

    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    outputs = {k: (tmp_path / f"{k}.png", tmp_path / f"{k}.svg") for k in ("distributions", "top_bottom", "dead")}
    nf.neuron_figures(hist, div, top_k=3, dead_threshold=0.01, dead_fraction=0.9, outputs=outputs, dpi=50)
    return kept


def test_histogram_lines_never_drop_to_the_axis_floor_at_empty_bins(two_models, tmp_path, monkeypatch):
    """On the log scale an empty bin has no height: every drawn line skips its empty bins (a neuron's scattered
    single values would otherwise draw a block of vertical lines) and keeps every non-empty one; only the dead
    neuron of the dead-neuron figure drops to the floor, so that its one full bin reads as a spike."""
    hist, div = two_models["d0.2_r0"]
    kept = drawn_figures(hist, div, tmp_path, monkeypatch)
    _, hists = read_histograms(hist)
    bins = {len(h.edges) - 1 for h in hists}
    drawn = [line for fig in kept for ax in fig.axes for line in ax.get_lines() if len(line.get_ydata()) - 1 in bins]
    # the dead-neuron figure's neuron keeps its empty bins at the floor: its one full bin stays a spike
    spikes = [line for line in drawn if line.get_label().startswith("neuron ")]
    assert spikes and all(not np.isnan(np.asarray(line.get_ydata(), float)).any() for line in spikes)
    lines = [line for line in drawn if line not in spikes]
    assert lines
    empty = 0
    for line in lines:
        y = np.asarray(line.get_ydata(), dtype=float)[:-1]
        assert (y[np.isfinite(y)] > 0).all()
        empty += int(np.isnan(y).sum())
    assert empty > 0  # the real histograms have empty bins (the c interval is wider than some neurons' range)
    # each line skips exactly the empty bins of a neuron's (or the layer average's) counts
    patterns = {(h.counts[j] == 0).tobytes() for h in hists for j in range(h.neurons)}
    patterns |= {(h.counts.sum(axis=0) == 0).tobytes() for h in hists}
    for line in lines:
        assert np.isnan(np.asarray(line.get_ydata(), dtype=float)[:-1]).tobytes() in patterns


def test_mean_abs_table_and_dropout_figure(two_models, tmp_path, monkeypatch):
    divs = [two_models[m][1] for m in ("d0.2_r0", "d0.5_r0")]
    summary = mean_abs_vs_dropout(divs, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg", dpi=50)
    assert len(summary) == 2 * LAYERS * 2
    for path in divs:
        table = pd.read_csv(path)
        for (layer, state), sub in table.groupby(["layer", "state"]):
            row = summary[(summary.model == table.model.iloc[0]) & (summary.layer == layer) & (summary.state == state)]
            assert row.mean_abs.iloc[0] == pytest.approx(sub.mean_abs.mean())
            assert row.dead.iloc[0] == sub.dead.sum() and row.neurons.iloc[0] == HIDDEN
    assert summary[summary.model == "d0.5_r0"].dead.sum() >= 1
    assert (tmp_path / "f.png").stat().st_size > 5_000
    # the dropout written whole, not to 6 digits (a model d0.1234567 beside dropout 0.123457)
    odd = tmp_path / "odd.csv"
    pd.read_csv(divs[0]).assign(dropout=0.1234567).to_csv(odd, index=False)
    mean_abs_vs_dropout([odd], tmp_path / "o.csv", tmp_path / "o.png", tmp_path / "o.svg", dpi=40)
    assert set(pd.read_csv(tmp_path / "o.csv", dtype=str).dropout) == {"0.1234567"}
    # one y scale per state (column), reaching every layer's upper quartile; h and c each their own
    import lstmscope.neuron_figures as nf

    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    higher = summary.copy()  # the last layer's values the largest, so that the first layer's alone would cut them
    last = higher.layer == LAYERS
    higher.loc[last, ["mean_abs", "q25", "q75"]] = higher.loc[last, ["mean_abs", "q25", "q75"]] * 5
    nf.mean_abs_vs_dropout_figure(higher, tmp_path / "g.png", tmp_path / "g.svg", "t")
    axes = np.array(kept[0].axes[:2 * LAYERS]).reshape(LAYERS, 2)
    for col, state in enumerate(("h", "c")):
        assert len({ax.get_ylim() for ax in axes[:, col]}) == 1 and axes[0, col].get_ylim()[0] == 0
        assert axes[0, col].get_ylim()[1] >= higher[higher.state == state].q75.max()


def test_the_dropout_figure_counts_each_models_dead_neurons(two_models, tmp_path, monkeypatch):
    """Whether dropout kills neurons reads from the figure: "N dead" above each dropout's highest point where one of
    its models has any (from the divergence tables' `dead`; several models of a dropout in one label, not one label
    over another), and a panel with none says so in its title."""
    import lstmscope.neuron_figures as nf

    divs = {m: pd.read_csv(two_models[m][1]) for m in ("d0.2_r0", "d0.5_r0")}
    summary = mean_abs_table([two_models[m][1] for m in divs])
    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    nf.mean_abs_vs_dropout_figure(summary, tmp_path / "g.png", tmp_path / "g.svg", "t")
    axes = np.array(kept[0].axes[:2 * LAYERS]).reshape(LAYERS, 2)
    some = 0
    for layer in range(1, LAYERS + 1):
        for col, state in enumerate(("h", "c")):
            ax = axes[layer - 1, col]
            counts = {}
            for table in divs.values():
                sub = table[(table.layer == layer) & (table.state == state)]
                if sub.dead.sum():
                    counts[(float(sub.dropout.iloc[0]), round(float(sub.mean_abs.mean()), 6))] = int(sub.dead.sum())
            drawn = {(round(float(t.xy[0]), 6), round(float(t.xy[1]), 6)): t.get_text() for t in ax.texts}
            assert drawn == {(round(d, 6), m): f"{n} dead" for (d, m), n in counts.items()}, (layer, state)
            assert ax.get_title().endswith("(no dead neuron)") == (not counts)
            some += len(counts)
    assert some >= 1  # d0.5_r0 has dead neurons (test_mean_abs_table_and_dropout_figure)
    # a second model of dropout 0.5 with 12 dead neurons and a higher mean: one label "<d0.5_r0's>, 12 dead" at
    # the higher point
    twin = summary[summary.model == "d0.5_r0"].assign(model="d0.5_r1", dead=12, mean_abs=lambda t: t.mean_abs + 1)
    nf.mean_abs_vs_dropout_figure(pd.concat([summary, twin]), tmp_path / "r.png", tmp_path / "r.svg", "t")
    axes = np.array(kept[-1].axes[:2 * LAYERS]).reshape(LAYERS, 2)
    for layer in range(1, LAYERS + 1):
        for col, state in enumerate(("h", "c")):
            mine = summary[(summary.model == "d0.5_r0") & (summary.layer == layer) & (summary.state == state)]
            texts = [(t.get_text(), tuple(np.round(t.xy, 6))) for t in axes[layer - 1, col].texts if "12" in t.get_text()]
            assert texts == [(f"{int(mine.dead.iloc[0])}, 12 dead", (0.5, round(float(mine.mean_abs.iloc[0]) + 1, 6)))]
    for fig in kept:
        nf.plt.close(fig)


def test_mixed_or_mismatched_inputs_are_refused(two_models, tmp_path):
    table = pd.read_csv(two_models["d0.2_r0"][1])
    table["text"] = "train"
    table.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(HistogramError, match="mix texts"):
        mean_abs_table([two_models["d0.5_r0"][1], tmp_path / "train.csv"])
    outputs = {k: (tmp_path / f"{k}.png", tmp_path / f"{k}.svg") for k in ("distributions", "top_bottom", "dead")}
    with pytest.raises(HistogramError, match=r"d0.5_r0-d.csv is the divergence table of model d0.5_r0 / text test, "
                                             r"but .*d0.2_r0-h.h5 is of d0.2_r0 / test"):
        neuron_figures(two_models["d0.2_r0"][0], two_models["d0.5_r0"][1], 3, 0.01, 0.9, outputs)
    # the table of a wider model of the same name (another run's): neurons the histograms lack
    wider = pd.read_csv(two_models["d0.2_r0"][1])
    extra = wider[wider["neuron"] == 0].assign(neuron=wider["neuron"].max() + 1, rank=pd.NA, dead=True)
    pd.concat([wider, extra]).to_csv(tmp_path / "wider.csv", index=False)
    width = wider["neuron"].max() + 1
    with pytest.raises(HistogramError, match=rf"wider.csv has neurons 0-{width} per layer and state, .*d0.2_r0-h.h5 "
                                             rf"{width} \(0-{width - 1}\): the table of another model\?"):
        neuron_figures(two_models["d0.2_r0"][0], tmp_path / "wider.csv", 3, 0.01, 0.9, outputs)
    assert not any(p.exists() for pair in outputs.values() for p in pair)


def test_top_bottom_labels_give_the_kl_sum_and_the_note_counts_the_neurons_drawn(two_models, tmp_path, monkeypatch):
    hist, div = two_models["d0.2_r0"]
    kept = drawn_figures(hist, div, tmp_path, monkeypatch)
    table = pd.read_csv(div)
    _, hists = read_histograms(hist)
    top_bottom = next(fig for fig in kept if any("top 3 by KL" in ax.get_title() for ax in fig.axes))
    notes = 0
    for ax in top_bottom.axes:
        layer, state = int(ax.get_title().split(",")[0].split()[1]), ax.get_title().split(", ")[1].split()[0]
        state = "h" if state.startswith("hidden") else "c"
        rows = table[(table.layer == layer) & (table.state == state)].set_index("neuron")
        labels = [t.get_text() for t in ax.get_legend().get_texts() if t.get_text() != "layer average"]
        neurons = [int(label.split()[0][1:]) for label in labels]
        assert len(neurons) == 3
        assert labels == [f"n{j} (#{int(rows.loc[j, 'rank'])}, KL sum {rows.loc[j, 'kl_sum']:.2f})" for j in neurons]
        h = next(x for x in hists if (x.layer, x.state) == (layer, state))
        under = int(h.underflow[neurons].sum())
        texts = [line for t in ax.texts for line in t.get_text().split("\n") if line.startswith("outside")]
        if under + int(h.overflow[neurons].sum()):
            notes += 1
            bounds = f"[{h.edges[0]:g}, {h.edges[-1]:g}]".replace("-", "\u2212")  # true minus signs
            assert texts[0].startswith(f"outside {bounds} (the 3 neurons drawn): {under} below")
    assert notes > 0  # the test interval cuts some cell states


def test_top_bottom_says_how_far_the_layer_reaches_beyond_its_x_axis(two_models, tmp_path, monkeypatch):
    """Fig. 5.2/5.5's x axis of c shows the middle 99.9 % of the layer's values and the neurons drawn: the layer
    average's tails beyond it were cut off unsaid. Each such panel says how far the layer's values reach (its stored
    min and max); h's axis is the whole [-1, 1] and says nothing."""
    hist, div = two_models["d0.2_r0"]
    kept = drawn_figures(hist, div, tmp_path, monkeypatch)
    _, hists = read_histograms(hist)
    top_bottom = next(fig for fig in kept if any("top 3 by KL" in ax.get_title() for ax in fig.axes))
    said = 0
    for ax in top_bottom.axes:
        layer, state = int(ax.get_title().split(",")[0].split()[1]), ax.get_title().split(", ")[1].split()[0][0]
        h = next(x for x in hists if (x.layer, x.state) == (layer, state))
        low, high = float(np.min(h.minimum)), float(np.max(h.maximum))
        (left, right), texts = ax.get_xlim(), [t.get_text() for t in ax.texts]
        reach = [line for text in texts for line in text.split("\n") if line.startswith("the layer's values reach")]
        if low < left or high > right:
            said += 1
            low, high = (f"{v:.3g}".replace("-", "\u2212") for v in (low, high))  # 3 digits, a true minus sign
            assert reach == [f"the layer's values reach {low} to {high}, beyond the x axis (its middle 99.9% and the "
                             "neurons drawn)"], (ax.get_title(), texts)
        else:
            assert reach == [], (ax.get_title(), texts)
    assert said > 0  # the tiny model's c reaches beyond the axis somewhere


def test_the_outside_notes_sit_between_title_and_frame_clear_of_the_curves(two_models, tmp_path, monkeypatch):
    """The share of values outside the range was written inside the frame, where the curves' peaks ran through it;
    it sits above the frame now, under the panel's title, in Fig. 5.1 and in Fig. 5.2/5.5."""
    import lstmscope.neuron_figures as nf

    hist, div = two_models["d0.2_r0"]
    kept = drawn_figures(hist, div, tmp_path, monkeypatch)
    checked = []
    for fig in kept[:2]:  # distributions, top_bottom
        checked.append(0)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            frame, title = ax.get_window_extent(renderer), ax.title.get_window_extent(renderer)
            for note in (t for t in ax.texts if "outside [" in t.get_text()):
                box = note.get_window_extent(renderer)
                assert box.y0 >= frame.y1 and box.y1 <= title.y0 + 1, (ax.get_title(), note.get_text())
                assert box.x0 >= frame.x0 - 1
                checked[-1] += 1
    assert min(checked) >= 1  # the test interval [-0.6, 0.6] cuts some cell states: notes in both figures
    for fig in kept:
        nf.plt.close(fig)


def test_the_dropout_figures_legend_is_one_for_the_figure_and_covers_no_panel(two_models, tmp_path, monkeypatch):
    """A legend inside a panel covered the top of layer 2 c's quartile band: one legend for the figure, below the
    panels, outside every axes, its entries naming the state (h's under the h column, c's under the c column)."""
    import lstmscope.neuron_figures as nf

    summary = mean_abs_table([two_models[m][1] for m in ("d0.2_r0", "d0.5_r0")])
    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    nf.mean_abs_vs_dropout_figure(summary, tmp_path / "g.png", tmp_path / "g.svg", "t")
    fig = kept[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "h: middle half of the neurons (quartiles)", "h: mean over the neurons (one point per model)",
        "c: middle half of the neurons (quartiles)", "c: mean over the neurons (one point per model)"]
    # the mean's entry is drawn as the panels draw it: a line through its points (a dot alone was its entry)
    lines = legend.get_lines()
    assert [line.get_linestyle() for line in lines] == ["-", "-"] and all(line.get_linewidth() > 0 for line in lines)
    # two models of one dropout: the band is the mean of their quartiles, the line the mean of their points
    nf.mean_abs_vs_dropout_figure(summary.assign(dropout=0.2), tmp_path / "r.png", tmp_path / "r.svg", "t")
    assert [t.get_text() for t in kept[-1].legends[0].get_texts()][:2] == [
        "h: middle half of the neurons (quartiles; the models' mean)",
        "h: mean over the neurons (one point per model; the line: their mean)"]
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer)), ax.get_title()  # nor its labels
    assert box.y1 <= min(ax.get_tightbbox(renderer).y0 for ax in fig.axes)  # below the panels
    # save_figure's crop keeps it
    from lstmscope.figures import _tight_box

    tight = _tight_box(fig)
    assert tight.y0 * fig.dpi <= box.y0 and box.y1 <= tight.y1 * fig.dpi


def test_fig_5_1_says_where_its_x_axis_cuts_the_cell_states_off(two_models, tmp_path, monkeypatch):
    """The axis shows the middle 99.99 % of c's values (a few far ones would squeeze the rest into a line); values
    beyond it ran off the frame unsaid. Here two neurons of c on [-10, 10] in 0.01 bins, 100 000 values each within
    ±0.1 and one far out each (-9.947 and 9.503): the note names the cut and how far the values reach, by their
    stored min and max, beyond the histogram's interval too (it named the edges of the last bins holding values,
    "reach 9.95" where the values reached 24.1)."""
    import dataclasses

    import lstmscope.neuron_figures as nf
    from lstmscope.histogram import StoredHistogram

    _, hists = read_histograms(two_models["d0.2_r0"][0])
    h = select(hists, 1, "h")
    edges = np.round(np.arange(-1000, 1001) * 0.01, 2)
    counts = np.zeros((2, 2000), dtype=np.int64)
    counts[:, 990:1010] = 5000  # [-0.1, 0.1)
    counts[0, 1950] = 1  # [9.5, 9.51)
    counts[1, 5] = 1  # [-9.95, -9.94)
    zeros = np.zeros(2)
    c = StoredHistogram(layer=1, state="c", counts=counts, underflow=zeros, overflow=zeros, near_zero=zeros,
                        mean=zeros, std=zeros, mean_abs=zeros, minimum=np.array([-0.0996, -9.947]),
                        maximum=np.array([9.503, 0.0998]), edges=edges, n_values=100_001, near_zero_threshold=0.01)
    kept = []
    monkeypatch.setattr(nf, "save_figure", lambda fig, *a, **k: kept.append(fig))
    nf.distributions_figure([h, c], tmp_path / "f.png", tmp_path / "f.svg", "t")
    ax = kept[0].axes[0]
    assert ax.get_xlim()[1] < 2  # the far values are off the axis ...
    assert [t.get_text() for t in ax.texts] == [  # ... and said
        "c: x axis cut to the middle 99.99% of its values, which reach \u22129.95 to 9.5"]
    kept.clear()
    # a value beyond the histogram's interval (counted as overflow, in no bin): the note gives its value
    beyond = dataclasses.replace(c, overflow=np.array([1, 0]), maximum=np.array([24.1, 0.0998]))
    nf.distributions_figure([h, beyond], tmp_path / "f.png", tmp_path / "f.svg", "t")
    assert kept[-1].axes[0].texts[0].get_text().startswith(
        "c: x axis cut to the middle 99.99% of its values, which reach \u22129.95 to 24.1\nc: outside [\u221210, 10]: "
        "0 below (0%), 1 above")
    kept.clear()
    far = (np.arange(2000) < 10) | (np.arange(2000) >= 1990)  # a tenth of them out at both ends
    wide = dataclasses.replace(c, counts=np.where(far, 5000, counts))
    nf.distributions_figure([h, wide], tmp_path / "f.png", tmp_path / "f.svg", "t")
    ax = kept[0].axes[0]
    assert ax.get_xlim() == (-10, 10) and not ax.texts  # the axis holds them all: nothing cut, nothing said
    for fig in kept:
        nf.plt.close(fig)

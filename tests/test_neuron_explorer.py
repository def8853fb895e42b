"""The neuron explorer: data from a real model's activations, and the page rendered in headless Chromium."""
from __future__ import annotations

import html
import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from lstmscope.ablation import run_ablation
from lstmscope.ablation_table import write_ablation_table
from lstmscope.ablation_file import AblationError, read_ablation_table
from lstmscope.histogram import HistogramError
from lstmscope.html_page import provenance_line
from lstmscope.neuron_explorer import (LEVELS, TEMPLATE, build_neuron_explorer, decode, encode, neuron_explorer_data,
                                      report_page)

from conftest import edit_yaml, planned_jobs
from neurons_support import (HIDDEN, LAYERS, TEXT, contrast, degenerate, divergence_csv,  # noqa: F401
                             group_removal_effects, other_run_ablation, prose_avoid, single_removal_effects, tiny,
                             write_divergence)
from test_explorer import chromium, js_p, selftest  # noqa: F401  (fixture)

K = 3  # neurons offered per layer and state
ABLATED_TOKENS = 150  # of the text's 400: the effect has no value after them
NO_FILL = "rgba(0, 0, 0, 0)"  # a word without a value: no fill, a dotted frame
# the ranking's least height, as the page sets it
RANKING_MIN_PX = int(re.search(r"var RANKING_MIN_PX = (\d+);", TEMPLATE.read_text()).group(1))


def test_codes_keep_values_to_1_254th_of_their_range():
    v = np.array([-0.5, 0.25, np.nan, 2.0, 1.1234])
    e = encode(v)
    assert (e["lo"], e["hi"]) == (-0.5, 2.0)
    back = decode(e)
    assert np.isnan(back[2])
    np.testing.assert_allclose(back[[0, 1, 3, 4]], v[[0, 1, 3, 4]], atol=2.5 / LEVELS / 2 + 1e-12)
    assert back[0] == -0.5 and back[3] == 2.0  # the ends are exact
    const = decode(encode(np.full(4, 0.3)))
    np.testing.assert_array_equal(const, np.full(4, 0.3))
    clipped = decode(encode(np.array([-5.0, -0.5, 0.0]), -1.0, 0.0))
    np.testing.assert_allclose(clipped, [-1.0, -0.5, 0.0], atol=1 / LEVELS)
    padded = decode(encode(np.array([np.nan, 1.0, 2.0])), 5)  # as the page reads a shorter series: no value after it
    np.testing.assert_array_equal(padded, [np.nan, 1.0, 2.0, np.nan, np.nan])


def test_data_offers_the_top_neurons_of_every_layer_and_state_with_their_values(tiny, divergence_csv):
    data = neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t")
    table = pd.read_csv(divergence_csv)
    with h5py.File(tiny.activations, "r") as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        p = f["expectancy"][:].astype(np.float64)
        assert data["words"] == words and data["offset"] == TEXT.offset
        assert [(v["layer"], v["state"]) for v in data["views"]] == [(k, s) for k in range(1, LAYERS + 1)
                                                                      for s in ("h", "c")]
        for view in data["views"]:
            sub = table[(table.layer == view["layer"]) & (table.state == view["state"]) & table["rank"].notna()]
            top = sub.sort_values("rank").head(K)
            assert [r["neuron"] for r in view["neurons"]] == top["neuron"].tolist()
            assert [r["rank"] for r in view["neurons"]] == list(range(1, K + 1))
            np.testing.assert_allclose([r["kl_sum"] for r in view["neurons"]], top["kl_sum"])
            for r in view["neurons"]:
                for state in ("h", "c"):
                    raw = f[f"layer{view['layer']}/{state}"][:, r["neuron"]].astype(np.float64)
                    s = data["series"][f"{view['layer']}:{r['neuron']}"][state]
                    np.testing.assert_allclose(decode(s), raw, atol=(raw.max() - raw.min()) / LEVELS / 2 + 1e-9)
    logp = decode(data["expectancy"])
    assert np.isnan(logp[0]) and data["expectancy"]["hi"] == 0.0
    np.testing.assert_allclose(logp[1:], np.log10(p[1:]), atol=-data["expectancy"]["lo"] / LEVELS / 2 + 1e-9)
    # the whole table, every entry matplotlib's coolwarm (to_hex rounds each channel as the page's hex does), so
    # that the colours the browser tests read back through it are the figures' colours
    from matplotlib.colors import to_hex

    assert data["lut"] == [to_hex(c) for c in colormaps["coolwarm"](np.arange(256))]


def test_null_offers_every_live_neuron_by_rank(tiny, divergence_csv, degenerate):
    data = neuron_explorer_data(tiny.activations, divergence_csv, None, 30, "t")
    table = pd.read_csv(divergence_csv)
    for view in data["views"]:
        live = table[(table.layer == view["layer"]) & (table.state == view["state"]) & table["rank"].notna()]
        assert [r["neuron"] for r in view["neurons"]] == live.sort_values("rank")["neuron"].tolist()
        assert len(view["neurons"]) > K
    assert len(data["series"]) == len({(layer, j) for layer, j in zip(table.layer, table.neuron)
                                        if table[(table.layer == layer) & (table.neuron == j)]["rank"].notna().any()})
    dead = neuron_explorer_data(degenerate.activations, degenerate.divergence, None, 30, "t")
    every = pd.read_csv(degenerate.divergence)
    assert every["rank"].isna().any()
    for view in dead["views"]:  # a dead neuron is not offered
        ranks = every[(every.layer == view["layer"]) & (every.state == view["state"])]["rank"]
        assert len(view["neurons"]) == ranks.notna().sum() and all(r["rank"] is not None for r in view["neurons"])
    assert (2, "h") not in [(v["layer"], v["state"]) for v in dead["views"]]  # every neuron of it is dead


def test_bad_inputs_name_the_file(tiny, divergence_csv, tmp_path):
    with pytest.raises(HistogramError, match="nope.csv: divergence table not found"):
        neuron_explorer_data(tiny.activations, tmp_path / "nope.csv", K, 30, "t")
    foreign = pd.read_csv(divergence_csv)  # a table of a wider model: one more neuron in every layer and state
    wider = foreign[foreign["neuron"] == 0].assign(neuron=HIDDEN, rank=pd.NA, dead=True)
    pd.concat([foreign, wider]).to_csv(tmp_path / "foreign.csv", index=False)
    with pytest.raises(ValueError, match=rf"foreign.csv: line {len(foreign) + 2} has layer 1 neuron {HIDDEN}, which "
                                         r".*activations.h5 lacks "
                                         rf"\(layers 1-{LAYERS}, neurons 0-{HIDDEN - 1}\)"):
        neuron_explorer_data(tiny.activations, tmp_path / "foreign.csv", K, 30, "t")
    with pytest.raises(ValueError, match="neurons=0"):
        neuron_explorer_data(tiny.activations, divergence_csv, 0, 30, "t")
    (tmp_path / "t.html").write_text("<html>{{TITLE}}</html>")
    with pytest.raises(ValueError, match=r"t.html: template has no \{\{DATA\}\} placeholder"):
        build_neuron_explorer(tiny.activations, divergence_csv, tmp_path / "x.html", K, 30, "t", tmp_path / "t.html")
    assert not (tmp_path / "x.html").exists()


def test_a_layer_state_without_a_live_neuron_gets_no_view(degenerate, caplog):
    data = neuron_explorer_data(degenerate.activations, degenerate.divergence, K, 30, "t")
    assert [(v["layer"], v["state"]) for v in data["views"]] == [(1, "h"), (1, "c"), (2, "c")]
    assert all(len(v["neurons"]) == K for v in data["views"])
    assert "layer2/h has no live (ranked) neuron: no view of it" in caplog.text


@pytest.mark.browser
def test_browser_page_without_a_dead_layers_view_works(chromium, degenerate, tmp_path):  # noqa: F811
    out = tmp_path / "page.html"
    build_neuron_explorer(degenerate.activations, degenerate.divergence, out, K, 30, "t")
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    neuron = data["views"][2]["neurons"][0]["neuron"]  # layer 2, c
    result = selftest(chromium, out, f"2:{neuron}:c:symmetric", tmp_path)
    assert result["errors"] == [] and result["spans"] == TEXT.tokens


@pytest.fixture(scope="module")
def page(tiny, divergence_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("neuron-page") / "page.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "lstmscope neurons <&> test")
    return out


def half_unit(number: str) -> float:
    """Half a unit of the last digit a number is written to ("0.021": 0.0005; "1.53e-4": 5e-7)."""
    mantissa, _, exponent = number.partition("e")
    return 0.5 * 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


def prose_windows(raw: np.ndarray, words: list[str], w: int) -> tuple[np.ndarray, np.ndarray]:
    """Each w-token window's sum of |value| and whether it holds no more tokens prose_avoid names than the
    fewest any window holds (the windows the page's "most active passage" may choose, heatmap.passage prose)."""
    sums = np.convolve(np.nan_to_num(np.abs(raw)), np.ones(w), mode="valid")
    heads = np.convolve(prose_avoid(words).astype(int), np.ones(w, dtype=int), mode="valid")
    return sums, heads == heads.min()


def _rgb_floats(css: str) -> tuple[float, float, float]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r / 255, g / 255, b / 255


def _rgb(hex_colour: str) -> str:
    return "rgb({}, {}, {})".format(*(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)))


@pytest.mark.browser
@pytest.mark.parametrize("show,scale", [("c", "range"), ("h", "symmetric"), ("c", "median"), ("p", "symmetric")])
def test_browser_colours_every_word_by_the_chosen_series(chromium, page, tiny, tmp_path, show, scale):  # noqa: F811
    text = page.read_text(encoding="utf-8")
    assert "lstmscope neurons &lt;&amp;&gt; test" in text and "http" not in text.split('id="lstmscope-data"')[0]
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', text, flags=re.S).group(1))
    view = data["views"][3]  # layer 2, ranked by c
    # one of its neurons after the first that h's view does not offer (the test hook shows a neuron in the first view
    # of its layer that offers it)
    by_h = {r["neuron"] for r in data["views"][2]["neurons"]}
    j = next(j for j, r in enumerate(view["neurons"]) if j > 0 and r["neuron"] not in by_h)
    neuron = view["neurons"][j]["neuron"]
    result = selftest(chromium, page, f"2:{neuron}:{show}:{scale}", tmp_path)
    assert result["errors"] == [], result["errors"]
    with h5py.File(tiny.activations, "r") as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        raw = (np.log10(f["expectancy"][:].astype(np.float64)) if show == "p"
               else f[f"layer2/{show}"][:, neuron].astype(np.float64))
    assert result["spans"] == len(words) == TEXT.tokens and result["words"] == words
    assert result["breaks"] == words.count("<eos>") and result["views"] == 2 * LAYERS and result["options"] == K
    # the neuron is named with its rank and the value of the measure the ranks follow (divergence.rank_by)
    assert result["neuron"] == f"{neuron} (rank {j + 1}, KL sum {view['neurons'][j]['kl_sum']:.3f})"
    # the colour of every word, from the raw values and the documented scale (the page's values are coded
    # to 1/254 of the range, so a word may fall into the neighbouring one of the 256 colours)
    if show == "p":
        lo, hi, scale = min(np.nanmin(raw), -1.0), 0.0, "range"
    else:
        lo, hi = raw.min(), raw.max()
    if scale == "symmetric":
        m = max(abs(lo), abs(hi))
        t = (raw / m + 1) / 2
    elif scale == "median":  # centred on the series' median over the text (grey), its farthest value at an end
        median = np.median(raw)
        d = max(abs(lo - median), abs(hi - median))
        t = (raw - median + d) / (2 * d)
        said = re.search(r"; grey: its median (\S+)$", result["info"]).group(1)  # of the page's codes: 1/254 apart
        assert abs(float(said) - median) <= (hi - lo) / 254 + 5e-4
    else:
        t = (raw - lo) / (hi - lo)
    expected = np.clip(np.floor(t * 256), 0, 255)
    index = {_rgb(c): k for k, c in enumerate(data["lut"])}
    got = np.array([index.get(c, -1) if c != NO_FILL else np.nan for c in result["colours"]])
    finite = np.isfinite(raw)
    assert np.array_equal(np.isnan(got), ~finite)  # no fill exactly where there is no value (token 0's expectancy)
    assert result["framed"] == (~finite).tolist()  # and a dotted frame there, nowhere else
    assert np.abs(got[finite] - expected[finite]).max() <= (2 if scale == "median" else 1)  # median: of the codes
    assert len(set(got[finite])) > 1  # really coloured, not one flat colour
    # the scale menu chooses only for h and c (the expectancy keeps its log scale); the passage button says what
    # it looks for
    assert result["scaleMenu"] == (show != "p")
    assert result["scale"] == ("log" if show == "p" else scale)  # the greyed-out menu names the expectancy's log scale
    assert result["peakLabel"] == ("go to the least expected passage" if show == "p" else "go to its most active passage")
    # white text exactly where it contrasts better than black with the fill (WCAG), as in the figures
    white = [(c != NO_FILL and contrast(_rgb_floats(c), (1, 1, 1)) > contrast(_rgb_floats(c), (0, 0, 0)))
             for c in result["colours"]]
    assert [t == "rgb(255, 255, 255)" for t in result["textColours"]] == white
    # the peak is a window of 30 tokens without a section heading (the text has two, and room between them)
    # whose sum of |value| is (up to the coding) the largest of those windows
    assert not prose_avoid(words)[result["peak"]:result["peak"] + 30].any()
    assert result["peak"] == first_best(raw, words, 30)  # of the exact values, not the page's codes
    # its outline stays while only the scale changes, and goes when another neuron is shown (it is not that one's)
    assert result["options"] > 1
    assert result["outline"] == ({"found": 30, "neuronChanged": 0} if show == "p"
                                 else {"found": 30, "scaleChanged": 30, "neuronChanged": 0})
    # numbered from the text's start, as the heatmaps' titles and lstmscope-heatmap --start; the text starts at
    # TEXT.offset > 0 in its split, and that position is given beside it
    assert TEXT.offset > 0
    assert result["tooltip"].startswith(f"token 3 (split position {TEXT.offset + 3}): {words[3]} · h ")
    # h and c as the page holds them, 255 steps of their range: decimals (3 or more), not a spurious "-1.80e-05"
    assert re.search(r" · h -?\d+\.\d{3,6} · c -?\d+\.\d{3,6} · p ", result["tooltip"]), result["tooltip"]
    if show in ("h", "c"):  # the colour bar's ends likewise
        assert all(re.fullmatch(rf"{show} -?\d+\.\d{{3,6}}", result[end]) for end in ("lo", "hi")), result
    assert result["unit"] == ("log scale" if show == "p" else "")  # the expectancy's scale said at the bar itself


@pytest.mark.browser
def test_browser_tooltip_of_a_text_at_the_start_of_its_split_gives_the_token_alone(chromium, tiny, divergence_csv,  # noqa: F811
                                                                                    tmp_path):
    """texts.<name>.offset 0 (the default texts): the token's number is its position in the split too, so the
    tooltip gives it once."""
    at_start = tmp_path / "offset0.h5"
    at_start.write_bytes(tiny.activations.read_bytes())
    with h5py.File(at_start, "r+") as f:
        f.attrs["offset"] = 0
        words = [w.decode() for w in f["tokens/words"][:]]
    out = tmp_path / "offset0.html"
    build_neuron_explorer(at_start, divergence_csv, out, K, 30, "t")
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    assert data["offset"] == 0
    neuron = data["views"][3]["neurons"][0]["neuron"]
    result = selftest(chromium, out, f"2:{neuron}:c:range", tmp_path)
    assert result["errors"] == [], result["errors"]
    assert result["tooltip"].startswith(f"token 3: {words[3]} · h ")


@pytest.mark.browser
def test_browser_expectancy_colours_run_from_the_floor_with_lower_p_in_its_colour(chromium, tiny, divergence_csv,  # noqa: F811
                                                                                  tmp_path):
    """heatmap.expectancy_floor: the page colours the expectancy from the floor to 1, as the figures; a lower p takes
    the floor's colour (the scale's label and the info line say so); the tooltip's p is still the word's own."""
    with h5py.File(tiny.activations, "r") as f:
        raw = np.log10(f["expectancy"][:].astype(np.float64))
    finite = np.isfinite(raw)
    floor = float(np.quantile(raw[finite], 0.3))  # log10 p: about a third of the words below it
    out = tmp_path / "floor.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", expectancy_floor=10 ** floor)
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    assert data["expectancy"]["floor"] == pytest.approx(floor) and data["expectancy"]["lo"] == pytest.approx(
        min(raw[finite].min(), -1.0))  # the codes still span every p
    assert data["expectancy"]["below"] == int((raw[finite] < floor).sum()) > 0  # counted on the exact p, not the codes
    neuron = data["views"][3]["neurons"][0]["neuron"]
    under = int(np.flatnonzero(finite & (raw < floor - 0.5))[0])  # a word far below the floor, hovered
    result = selftest(chromium, out, f"2:{neuron}:p:range", tmp_path, query={"hover": under})
    assert result["errors"] == [], result["errors"]
    shown = float(re.search(r" · p ([0-9.e+-]+)", result["tooltip"]).group(1))
    assert result["tooltip"].startswith(f"token {under} (split position {TEXT.offset + under}): ")
    assert shown == pytest.approx(10 ** raw[under], rel=0.01) and shown < 10 ** floor / 3  # its own p, not the floor's
    index = {_rgb(c): k for k, c in enumerate(data["lut"])}
    got = np.array([index.get(c, -1) if c != NO_FILL else np.nan for c in result["colours"]])
    expected = np.clip(np.floor((raw - floor) / -floor * 256), 0, 255)
    step = -data["expectancy"]["lo"] / LEVELS  # the page's coding of log10 p
    assert np.abs(got[finite] - expected[finite]).max() <= 1
    assert (got[finite & (raw < floor - step)] == 0).all() and (got[finite & (raw > floor + 2 * step)] > 0).any()
    assert result["lo"] == f"p {js_p(10 ** floor)}" and result["hi"] == "p 1.00"
    assert result["unit"] == "log scale"  # said at the colour bar itself
    assert f"log scale from p {js_p(10 ** floor)} to 1 (lower p in its colour);" in result["info"]


@pytest.mark.browser
@pytest.mark.parametrize("show", ["h", "p"])
def test_browser_word_search_marks_the_matches_and_compares_them_with_the_rest(chromium, page, tiny, tmp_path,
                                                                              show):  # noqa: F811
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page.read_text(), flags=re.S).group(1))
    neuron = data["views"][2]["neurons"][0]["neuron"]  # layer 2, ranked by h
    with h5py.File(tiny.activations, "r") as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        raw = (np.log10(f["expectancy"][:].astype(np.float64)) if show == "p"
               else f[f"layer2/{show}"][:, neuron].astype(np.float64))
    word = "the"
    on = np.array([w == word for w in words])
    assert 3 <= on.sum() < len(words) // 2
    result = selftest(chromium, page, f"2:{neuron}:{show}:symmetric", tmp_path, query={"search": word})
    assert result["errors"] == [], result["errors"]
    found = result["search"]
    first, second = np.flatnonzero(on)[:2]
    assert found["matched"] == np.flatnonzero(on).tolist() and found["arrows"] and int(found["weight"]) >= 700
    assert found["steps"] == [first, second, first] and found["current"] == [first]
    assert found["stepped"].startswith(f"1 / {on.sum()} of {len(words)} tokens · ")
    shown = re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", found["label"])
    numbers = [float(x) for x in shown]
    assert found["label"].startswith(f"{on.sum()} of {len(words)} tokens · ")
    finite = np.isfinite(raw)
    if show == "p":  # the median p on the matches and elsewhere, to the page's coding (1/254 of the log range)
        assert "median p" in found["label"]
        step = -data["expectancy"]["lo"] / LEVELS
        expected = [np.median(10 ** raw[on & finite]), np.median(10 ** raw[~on & finite])]
        for text, number, median in zip(shown, numbers, expected):  # and to the decimals shown (0.0205 as 0.021)
            assert abs(number - median) <= (10 ** (step / 2) - 1 + 0.002) * median + half_unit(text), (text, median)
    else:
        assert f"mean {show}" in found["label"]
        step = (raw.max() - raw.min()) / LEVELS
        np.testing.assert_allclose(numbers, [raw[on].mean(), raw[~on].mean()], atol=step / 2 + 0.0006)
    # which offered neurons respond to the word: Cohen's d of h and c on the matches against every other token
    offered = sorted({(v["layer"], r["neuron"]) for v in data["views"] for r in v["neurons"]})
    with h5py.File(tiny.activations, "r") as f:
        expected = {}
        for layer, j in offered:
            for state in ("h", "c"):
                x = f[f"layer{layer}/{state}"][:, j].astype(np.float64)
                a, b = x[on], x[~on]
                pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(x) - 2))
                expected[(layer, j, state)] = (a.mean() - b.mean()) / pooled
    ranking = found["ranking"]
    assert len(ranking) == min(10, len(expected))
    got = {(r["layer"], r["neuron"], r["state"]): r["d"] for r in ranking}
    for key, d in got.items():  # the page's values are coded to 1/254 of each series' range
        assert d == pytest.approx(expected[key], abs=0.03), key
    assert [abs(r["d"]) for r in ranking] == sorted((abs(r["d"]) for r in ranking), reverse=True)
    assert abs(ranking[0]["d"]) >= max(abs(d) for d in expected.values()) - 0.03
    assert abs(ranking[-1]["d"]) >= sorted((abs(d) for d in expected.values()), reverse=True)[len(ranking) - 1] - 0.03
    top = ranking[0]  # a click on it shows that neuron's state, in the view of that layer and state
    picked = found["picked"]
    assert picked["show"] == top["state"] and picked["neuron"].startswith(f"{top['neuron']} (rank ")
    holding = [v for v in data["views"] if v["layer"] == top["layer"]
               and top["neuron"] in [r["neuron"] for r in v["neurons"]]]
    own = [v for v in holding if v["state"] == top["state"]]
    assert picked["view"] == f"layer {top['layer']} / KL of {(own or holding)[0]['state']}"
    # the info line says so when the colours show the state the view does not rank by
    assert (f"the colours show its {top['state']}" in picked["info"]) == (not own)
    nothing = selftest(chromium, page, f"2:{neuron}:{show}:symmetric", tmp_path, query={"search": "Zyxwvu"})
    assert nothing["errors"] == [] and nothing["search"]["matched"] == []
    assert nothing["search"]["label"] == "no token is Zyxwvu"
    assert not nothing["search"]["arrows"] and nothing["search"]["steps"] == [-1, -1, -1]
    assert not nothing["search"]["rankOffered"]
    once = next(w for w in words if words.count(w) == 1)  # one match: stepped through, but no d to rank by
    single = selftest(chromium, page, f"2:{neuron}:{show}:symmetric", tmp_path, query={"search": once})
    assert single["errors"] == [] and single["search"]["matched"] == [words.index(once)]
    assert single["search"]["steps"] == [words.index(once)] * 3 and not single["search"]["rankOffered"]


@pytest.mark.browser
def test_browser_the_word_scrolled_to_is_not_behind_the_header_in_a_narrow_window(chromium, page, tmp_path):  # noqa: F811
    """The header stays at the top (sticky) and wraps to several lines in a narrow window (half a laptop's screen):
    the passage and the search's current match are centred in what it leaves of the window, not under it. With the
    ranking open it takes at most half the window, even in a short one (where its lines alone took over half, and
    with the ranking all of it): the ranking, then the header, scroll inside."""
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page.read_text(), flags=re.S).group(1))
    neuron = data["views"][2]["neurons"][0]["neuron"]
    for window in ((683, 400), (683, 560), (1280, 640), (1280, 900)):  # (the ranking opened made the header over half
        # of the second and taller than the first)
        result = selftest(chromium, page, f"2:{neuron}:h:symmetric", tmp_path, query={"search": "the"}, window=window)
        assert result["errors"] == [], result["errors"]
        assert result["search"]["rankOffered"]
        assert result["peakClear"] and result["search"]["currentClear"] and result["search"]["clearWithRanking"], window
        shown = result["search"]["withRanking"]  # the ranking open: the header, the ranking in it, the passage
        (top, bottom), (ranking_top, ranking_bottom) = shown["header"], shown["ranking"]
        assert bottom - top <= shown["window"] / 2 + 1, (window, shown)
        assert top <= ranking_top < ranking_bottom <= bottom, (window, shown)
        assert shown["peakClear"], (window, shown)
        if window == (683, 400):  # the ranking is capped there, and scrolls inside
            assert shown["shown"] < shown["whole"], shown
        assert not shown["headerScrolls"] or shown["shown"] <= RANKING_MIN_PX, (window, shown)


@pytest.mark.browser
def test_browser_the_header_scrolls_only_where_the_ranking_is_at_its_least(chromium, page, tmp_path):  # noqa: F811
    """The ranking yields first: the header itself scrolls only once the ranking is down to its least height. In a
    window where the ranking is capped between its least and its whole height, the header once overflowed by its
    bottom border's pixel, a second scroll bar beside the ranking's. The windows are chosen from the heights a tall
    one shows (the header's other lines, the ranking's whole height: they depend on the fonts)."""
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page.read_text(), flags=re.S).group(1))
    neuron, width = data["views"][2]["neurons"][0]["neuron"], 683  # a narrow window: the header's lines wrap

    def opened(height: int) -> dict:
        result = selftest(chromium, page, f"2:{neuron}:h:symmetric", tmp_path, query={"search": "the"},
                          window=(width, height))
        assert result["errors"] == [], result["errors"]
        return result["search"]["withRanking"]

    tall = opened(1000)
    (top, bottom), whole = tall["header"], tall["whole"]
    assert tall["shown"] == whole and not tall["headerScrolls"], tall
    rest, chrome = bottom - top - whole, 1000 - tall["window"]  # the header but its ranking; the browser's own rows
    assert whole >= RANKING_MIN_PX + 6, tall  # room between the least and the whole height
    for target in (RANKING_MIN_PX + 2, whole - 2):
        shown = opened(round(2 * (rest + target)) + chrome)  # half the window: the header with a ranking of target
        assert abs(shown["shown"] - target) <= 1 and shown["shown"] < whole, (target, shown)
        assert not shown["headerScrolls"], (target, shown)


@pytest.mark.browser
def test_browser_at_thesis_length(chromium, tiny, tmp_path):  # noqa: F811
    """The thesis's 18 000-token text: every word drawn and coloured, page within a couple of MB."""
    from lstmscope.activations import TextSpec, dump_activations

    n = 18000
    act = tmp_path / "long.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TextSpec("test", "test", 0, n), act,
                     model_info={"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0})
    table = write_divergence(act, tmp_path)
    out = tmp_path / "long.html"
    size = build_neuron_explorer(act, table, out, 8, 80, "thesis length")
    assert size < 3_000_000
    top = pd.read_csv(table).query("layer == 1 and state == 'h' and rank == 1")["neuron"].item()
    result = selftest(chromium, out, f"1:{top}:h:range", tmp_path, budget_ms=60000)
    assert result["errors"] == [] and result["spans"] == n and result["options"] == 8
    with h5py.File(act, "r") as f:
        raw = f["layer1/h"][:, top].astype(np.float64)
    expected = np.clip(np.floor((raw - raw.min()) / (raw.max() - raw.min()) * 256), 0, 255)
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    index = {_rgb(c): k for k, c in enumerate(data["lut"])}
    got = np.array([index[c] for c in result["colours"]])
    assert np.abs(got - expected).max() <= 1


# --------------------------------------------------------------------------- with the model's ablation


@pytest.fixture(scope="module")
def ablation(tiny, divergence_csv, tmp_path_factory):
    """A real ablation of the shared model: 2 top and 2 random neurons per layer, on the first 150 tokens."""
    folder = tmp_path_factory.mktemp("explorer-ablation")
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, folder / "a.h5", state="h",
                 neurons=2, random=2, seed=5, max_tokens=ABLATED_TOKENS)
    write_ablation_table(folder / "a.h5", divergence_csv, folder / "a.csv")
    return folder / "a.h5", pd.read_csv(folder / "a.csv", dtype={"neurons": str})


def test_data_offers_the_removed_neurons_with_the_effect_of_each_removal(tiny, divergence_csv, ablation):
    h5, table = ablation
    data = neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=h5)
    plain = neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t")
    assert data["views"][:2 * LAYERS] == plain["views"]  # the KL views are unchanged
    removed = data["views"][2 * LAYERS:]
    assert [(v["layer"], v["state"], v.get("ablated")) for v in removed] == [(k, "h", True) for k in range(1, LAYERS + 1)]
    singles = table[table.group.isin(["top", "random"])]
    div = pd.read_csv(divergence_csv)
    effects = single_removal_effects(h5)
    groups = group_removal_effects(h5)
    for view in removed:
        rows = singles[singles.layer == view["layer"]]
        alone = [r for r in view["neurons"] if r["neuron"] is not None]
        assert [(r["neuron"], r["group"]) for r in alone] == [(int(r.neurons), r.group) for r in rows.itertuples()]
        # then each group removed together: its neurons and effect, no h or c
        together = view["neurons"][len(alone):]
        want_groups = table[(table.layer == view["layer"]) & table.group.isin(["top all", "random all"])]
        assert [(r["group"], r["removed"]) for r in together] == [
            (g.group, [int(j) for j in g.neurons.split()]) for g in want_groups.itertuples()]
        assert [r["group"] for r in together] == ["top all", "random all"]
        for r, want in zip(together, want_groups.itertuples()):
            assert r["perplexity_change_pct"] == pytest.approx(want.perplexity_change_pct, abs=2e-3)
            s = data["series"][r["series"]]
            assert set(s) == {"effect", "change", "group", "tokens", "removed", "held"} and s["removed"] == r["removed"]
            assert s["held"] == "h held at its mean over the words read"  # the ablation's method, named on the page
            neurons, raw = groups[(view["layer"], r["group"])]
            assert neurons == r["removed"]
            effect = decode(s["effect"], TEXT.tokens)
            assert np.isnan(effect[0]) and np.isnan(effect[ABLATED_TOKENS:]).all()
            np.testing.assert_allclose(effect[1:ABLATED_TOKENS], raw[1:],
                                       atol=(np.nanmax(raw) - np.nanmin(raw)) / LEVELS / 2 + 1e-9)
        for r, want in zip(alone, rows.itertuples()):
            assert r["perplexity_change_pct"] == pytest.approx(want.perplexity_change_pct, abs=2e-3)
            d = div[(div.layer == view["layer"]) & (div.state == "h") & (div.neuron == r["neuron"])].iloc[0]
            assert r["kl_sum"] == pytest.approx(d.kl_sum) and r["rank"] == (None if pd.isna(d["rank"]) else d["rank"])
            s = data["series"][f"{view['layer']}:{r['neuron']}"]
            assert s["group"] == r["group"] and s["change"] == r["perplexity_change_pct"]
            assert len(decode(s["effect"])) == ABLATED_TOKENS  # stored for the words the ablation read only
            effect = decode(s["effect"], TEXT.tokens)
            raw = effects[(view["layer"], r["neuron"])]
            assert len(effect) == TEXT.tokens and np.isnan(effect[0]) and np.isnan(effect[ABLATED_TOKENS:]).all()
            np.testing.assert_allclose(effect[1:ABLATED_TOKENS], raw[1:],
                                       atol=(np.nanmax(raw) - np.nanmin(raw)) / LEVELS / 2 + 1e-9)
            with h5py.File(tiny.activations) as f:  # a random neuron's h is offered too
                h = f[f"layer{view['layer']}/h"][:, r["neuron"]].astype(np.float64)
            np.testing.assert_allclose(decode(s["h"]), h, atol=(h.max() - h.min()) / LEVELS / 2 + 1e-9)
    # a top neuron of the KL views that was removed on its own carries its effect there too; the others have none
    top1 = data["views"][2]["neurons"][0]  # layer 2 / h, rank 1: removed (ablation.state h, 2 top neurons)
    assert "effect" in data["series"][f"2:{top1['neuron']}"]
    unremoved = [f"{v['layer']}:{r['neuron']}" for v in data["views"] for r in v["neurons"]
                 if r["neuron"] is not None and (v["layer"], r["neuron"]) not in effects]
    assert unremoved and all("effect" not in data["series"][k] for k in unremoved)


def test_an_ablation_of_another_model_or_text_is_refused(tiny, divergence_csv, ablation, tmp_path):
    h5, _ = ablation
    for key, value in (("text", "valid"), ("model", "d0.5_r1")):
        other = tmp_path / f"{key}.h5"
        other.write_bytes(h5.read_bytes())
        with h5py.File(other, "a") as f:
            f.attrs[key] = value
        with pytest.raises(AblationError, match=f"{key}.h5 is the ablation of model .*, not of model"):
            neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=other)
    shifted = tmp_path / "shifted.h5"
    shifted.write_bytes(h5.read_bytes())
    with h5py.File(shifted, "a") as f:
        words = f["tokens/words"][:]
        f["tokens/words"][:] = np.roll(words, 1)
    with pytest.raises(AblationError, match=f"shifted.h5: its {ABLATED_TOKENS} words are not the first"):
        neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=shifted)
    with pytest.raises(AblationError, match="nope.h5"):
        build_neuron_explorer(tiny.activations, divergence_csv, tmp_path / "x.html", K, 30, "t",
                              ablation_path=tmp_path / "nope.h5")
    assert not (tmp_path / "x.html").exists()


def test_another_runs_table_or_ablation_of_a_model_named_alike_is_refused(tiny, divergence_csv, degenerate,
                                                                          other_run_ablation, tmp_path):
    """Two runs name their models alike (here both d0.2_r0; the other's checkpoint has units switched off): neither
    the other's divergence table nor its ablation is taken for this one's, and a table short of a layer says so."""
    with pytest.raises(HistogramError, match=r"d.csv is not the divergence table of .*activations.h5: neuron \d+ of "
                                             r"layer 1 [hc] spans .* there, .* in the activations"):
        neuron_explorer_data(tiny.activations, degenerate.divergence, K, 30, "t")
    short = pd.read_csv(divergence_csv)
    short[short.layer == 1].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(HistogramError, match=r"short.csv has no rows of layer 2 h, layer 2 c, which .*activations.h5 "
                                             "holds"):
        neuron_explorer_data(tiny.activations, tmp_path / "short.csv", K, 30, "t")
    other = other_run_ablation
    with pytest.raises(AblationError, match="other.h5 is the ablation of another checkpoint of model d0.2_r0"):
        neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=other)
    # the same files with the run's own: accepted
    assert neuron_explorer_data(degenerate.activations, degenerate.divergence, K, 30, "t", ablation_path=other)


def test_a_float16_files_own_table_is_accepted_for_every_neuron(tiny, tmp_path):
    """The table's minimum and maximum, from the file's float16 values and written with 8 digits, are the page's
    own: every neuron of every layer and state (all offered) passes the check, and the check did run."""
    from lstmscope.activations import dump_activations

    half = tmp_path / "half.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, half, dtype="float16", chunk_tokens=64,
                     model_info={"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0})
    table = write_divergence(half, tmp_path)
    data = neuron_explorer_data(half, table, None, 30, "t")
    offered = {f"{v['layer']}:{r['neuron']}" for v in data["views"] for r in v["neurons"]}
    assert len(offered) >= LAYERS * HIDDEN // 2 and offered <= set(data["series"])  # most neurons, every layer
    shifted = pd.read_csv(table)
    shifted["max"] = shifted["max"] * (1 + 1e-3)  # a table a little off: refused, so the check ran on these
    shifted.to_csv(tmp_path / "shifted.csv", index=False)
    with pytest.raises(HistogramError, match="is not the divergence table of"):
        neuron_explorer_data(half, tmp_path / "shifted.csv", None, 30, "t")


def first_best(raw: np.ndarray, words: list[str], w: int) -> int:
    """The first of the windows prose_windows allows with the largest sum of |value| (ties within rounding)."""
    sums, prose = prose_windows(raw, words, w)
    return int(np.flatnonzero(prose & (sums >= sums[prose].max() - 1e-9))[0])


def test_every_most_active_passage_is_the_one_the_figures_show(tiny, divergence_csv, ablation):
    """The page's "most active passage" of each series is found on the exact values, not its 8-bit codes: it is
    the passage of the neuron heatmap figures (and of the ablation heatmap for an effect, the least expected for
    the expectancy), even where coding would move it (a near tie)."""
    from lstmscope.ablation_figures import effect_passage
    from lstmscope.heatmap import neuron_blocks
    from lstmscope.wikitext import passage_avoid

    h5, _ = ablation
    data = neuron_explorer_data(tiny.activations, divergence_csv, None, 30, "t", ablation_path=h5)
    with h5py.File(tiny.activations, "r") as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        values = {(layer, s): f[f"layer{layer}/{s}"][:].astype(np.float64) for layer in (1, 2) for s in "hc"}
        logp = np.log10(f["expectancy"][:].astype(np.float64))
    avoid = passage_avoid(words, "prose")
    moved = 0
    for view in data["views"]:
        if view.get("ablated"):
            continue
        for row in view["neurons"]:
            layer, j = view["layer"], row["neuron"]
            h, c = values[(layer, "h")][:, j], values[(layer, "c")][:, j]
            for s, raw in (("h", h), ("c", c)):
                got = data["series"][f"{layer}:{j}"][s]["peak"]
                assert got == first_best(raw, words, 30), (layer, j, s)
                head = neuron_blocks(words, h, c, layer, j, 1, s, 30, avoid=avoid)[0].title
                assert f"tokens {got}-{got + 29}" in head, (head, got)
                moved += got != first_best(decode(data["series"][f"{layer}:{j}"][s]), words, 30)
    assert data["expectancy"]["peak"] == first_best(logp, words, 30)
    effects = single_removal_effects(h5)
    for (layer, j), effect in effects.items():
        series = data["series"][f"{layer}:{j}"]["effect"]
        assert series["peak"] == effect_passage(effect, 30, avoid[:len(effect)])[0] == first_best(effect, words[:len(effect)], 30)
    assert moved > 0  # the tiny model has such near ties: the case is exercised


@pytest.mark.browser
def test_browser_opens_on_the_configured_scale(chromium, tiny, divergence_csv, tmp_path):  # noqa: F811
    """heatmap.scale reaches the page: it opens on min-to-max where the figures are drawn so (the menu still turns)."""
    neuron = int(pd.read_csv(divergence_csv).query("layer == 2 and state == 'h' and rank == 1")["neuron"].iloc[0])
    for scale in ("range", "symmetric", "median"):
        out = tmp_path / f"{scale}.html"
        build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", scale=scale)
        result = selftest(chromium, out, f"2:{neuron}:h:symmetric", tmp_path)
        assert result["errors"] == [] and result["initialScale"] == scale and result["scale"] == "symmetric"
    with pytest.raises(ValueError, match="heatmap scale 'linear'"):
        build_neuron_explorer(tiny.activations, divergence_csv, tmp_path / "x.html", K, 30, "t", scale="linear")
    assert not (tmp_path / "x.html").exists()


@pytest.mark.browser
def test_browser_names_only_the_kinds_of_neurons_a_removed_view_holds(chromium, tiny, divergence_csv,
                                                                       tmp_path):  # noqa: F811
    """ablation.neurons: 0 (random controls only): the view of removed neurons says "random", not "top-KL"."""
    h5 = tmp_path / "random.h5"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, state="h", neurons=0, random=2, seed=5,
                 max_tokens=60)
    out = tmp_path / "page.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", ablation_path=h5)
    (layer, j), *_ = sorted(single_removal_effects(h5))
    result = selftest(chromium, out, f"{layer}:{j}:e:symmetric:removed", tmp_path)
    assert result["errors"] == [] and result["view"] == f"layer {layer} / removed: random", result["view"]
    opened = selftest(chromium, out, "opened", tmp_path, query={"layer": layer, "by": "removed", "neuron": j, "show": "e"})
    assert opened["errors"] == [] and opened["line"] == ""
    assert opened["view"] == f"layer {layer} / removed: random" and opened["show"] == "e"
    assert opened["neuron"].startswith(f"{j} (random; without it perplexity ")


@pytest.mark.browser
def test_browser_colours_the_words_by_the_effect_of_removing_a_neuron(chromium, tiny, divergence_csv, ablation,
                                                                      tmp_path):  # noqa: F811
    h5, table = ablation
    out = tmp_path / "page.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", ablation_path=h5)
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    index = {_rgb(c): k for k, c in enumerate(data["lut"])}
    effects = single_removal_effects(h5)
    rand = table[(table.group == "random") & (table.layer == 2)].iloc[0]
    j = int(rand.neurons)
    result = selftest(chromium, out, f"2:{j}:e:symmetric:removed", tmp_path)
    assert result["errors"] == [], result["errors"]
    assert result["views"] == 3 * LAYERS and result["view"] == "layer 2 / removed: top-KL of h, random"
    tip = result["edgeTooltip"]  # hovered at the window's right edge: inside it, at its own width
    assert 0 <= tip["left"] and tip["right"] <= tip["window"] and tip["width"] > 200, tip
    assert result["neuron"] == f"{j} (random; without it perplexity {rand.perplexity_change_pct:+.2f} %)"
    assert result["show"] == "e" and result["effectOffered"]
    assert f"words after the first {ABLATED_TOKENS} the ablation read" in result["info"]
    assert f"changes by {rand.perplexity_change_pct:+.2f} %" in result["info"]
    raw = np.full(TEXT.tokens, np.nan)
    raw[:ABLATED_TOKENS] = effects[(2, j)]
    m = np.nanmax(np.abs(raw))
    expected = np.clip(np.floor((raw / m + 1) / 2 * 256), 0, 255)
    got = np.array([index.get(c, -1) if c != NO_FILL else np.nan for c in result["colours"]])
    finite = np.isfinite(raw)
    assert np.array_equal(np.isnan(got), ~finite)  # no fill: the first word and every word the ablation did not read
    assert result["framed"] == (~finite).tolist()
    assert np.abs(got[finite] - expected[finite]).max() <= 1 and len(set(got[finite])) > 1
    assert result["peak"] + 30 <= ABLATED_TOKENS
    assert result["peak"] == first_best(raw[:ABLATED_TOKENS], result["words"][:ABLATED_TOKENS], 30)
    assert " · effect of removing it " in result["tooltip"]
    # the colour bar's ends to as many decimals as the page's 255 steps of the effect's range resolve (3 at least):
    # small effects are not all "0.000"
    step = (np.nanmax(raw) - np.nanmin(raw)) / 254
    decimals = max(3, int(np.ceil(-np.log10(step))))
    for end in ("lo", "hi"):
        assert re.fullmatch(rf"effect -?\d+\.\d{{{decimals}}}", result[end]), (result[end], step)
    assert result["unit"] == "nats"  # the effect's unit, at the colour bar itself
    # a search by the effect: the count says how many matches lie among the words read, the mean is over those
    on = np.array([w == "the" for w in result["words"]])
    searched = selftest(chromium, out, f"2:{j}:e:symmetric:removed", tmp_path, query={"search": "the"})["search"]
    read = int(on[:ABLATED_TOKENS].sum())
    assert 0 < read < on.sum()
    assert searched["label"].startswith(f"{on.sum()} of {TEXT.tokens} tokens ({read} among the {ABLATED_TOKENS} the "
                                        "ablation read) · mean effect ")
    mean_on, mean_off = (float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]\d+)?", searched["label"]))
    np.testing.assert_allclose([mean_on, mean_off], [np.nanmean(raw[on]), np.nanmean(raw[~on])],
                               atol=m / LEVELS + 0.0006)
    # a passage so long that every one among the words read holds a heading: the peak stays among those words
    # (where the effect has values), not past them where a window may hold no heading but no value either
    _, prose = prose_windows(raw, result["words"], 100)
    assert not prose[:ABLATED_TOKENS - 99].any() and prose.any()
    long = tmp_path / "long.html"
    build_neuron_explorer(tiny.activations, divergence_csv, long, K, 100, "t", ablation_path=h5)
    assert selftest(chromium, long, f"2:{j}:e:symmetric:removed", tmp_path)["peak"] + 100 <= ABLATED_TOKENS
    # a neuron that was not removed on its own offers no effect: the page falls back to the state of the view it is
    # shown in (the first of layer 2 that offers it), which that view's line describes
    kept = next(r["neuron"] for v in data["views"] if v["layer"] == 2 and not v.get("ablated") for r in v["neurons"]
                if (2, r["neuron"]) not in effects)
    shown_in = next(v for v in data["views"] if v["layer"] == 2 and not v.get("ablated")
                    and any(r["neuron"] == kept for r in v["neurons"]))
    result = selftest(chromium, out, f"2:{kept}:e:symmetric", tmp_path)
    assert result["errors"] == [] and result["show"] == shown_in["state"] and not result["effectOffered"]
    assert result["view"] == f"layer 2 / KL of {shown_in['state']}"
    assert "effect" not in result["tooltip"]


@pytest.mark.browser
def test_browser_colours_the_words_by_the_effect_of_removing_a_group_together(chromium, tiny, divergence_csv,
                                                                               ablation, tmp_path):  # noqa: F811
    h5, table = ablation
    out = tmp_path / "page.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", ablation_path=h5)
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', out.read_text(), flags=re.S).group(1))
    index = {_rgb(c): k for k, c in enumerate(data["lut"])}
    neurons, raw_read = group_removal_effects(h5)[(1, "random all")]
    row = table[(table.group == "random all") & (table.layer == 1)].iloc[0]
    # asked for h: a group has no h or c of its own, so the page shows the effect
    result = selftest(chromium, out, "1:random all:h:symmetric:removed", tmp_path)
    assert result["errors"] == [], result["errors"]
    assert result["view"] == "layer 1 / removed: top-KL of h, random"
    assert result["neuron"] == (f"all {len(neurons)} random together: {' '.join(map(str, neurons))} "
                                f"(without them perplexity {row.perplexity_change_pct:+.2f} %)")
    assert result["show"] == "e" and result["effectOffered"] and not result["statesOffered"]
    assert f"the {len(neurons)} random neurons ({' '.join(map(str, neurons))}) removed together" in result["info"]
    assert f"changes by {row.perplexity_change_pct:+.2f} %" in result["info"]
    raw = np.full(TEXT.tokens, np.nan)
    raw[:ABLATED_TOKENS] = raw_read
    m = np.nanmax(np.abs(raw))
    expected = np.clip(np.floor((raw / m + 1) / 2 * 256), 0, 255)
    got = np.array([index.get(c, -1) if c != NO_FILL else np.nan for c in result["colours"]])
    finite = np.isfinite(raw)
    assert np.array_equal(np.isnan(got), ~finite) and result["framed"] == (~finite).tolist()
    assert np.abs(got[finite] - expected[finite]).max() <= 1 and len(set(got[finite])) > 1
    assert " · effect of removing them " in result["tooltip"] and " · h " not in result["tooltip"]
    # the top-KL group of layer 2 is offered too, and a single neuron of the same view still has its h and c
    assert not result["scaleMenu"] and result["peakLabel"] == "go to where their removal matters most"
    # asked for min to max, an effect is still drawn centred on 0 (grey = no effect), as the info line says
    result = selftest(chromium, out, "2:top all:e:range:removed", tmp_path)
    assert result["errors"] == [] and result["neuron"].startswith("all 2 top-KL of h together: ")
    assert "layer 2, the 2 top-KL neurons of h (" in result["info"]  # the ranking the top neurons came from
    symmetric = selftest(chromium, out, "2:top all:e:symmetric:removed", tmp_path)
    assert result["colours"] == symmetric["colours"] and len(set(result["colours"])) > 2
    assert result["scale"] == "symmetric"  # the greyed-out menu shows the scale drawn
    top = table[(table.group == "top") & (table.layer == 2)].iloc[0]
    j = int(top.neurons)
    result = selftest(chromium, out, f"2:{j}:c:range:removed", tmp_path)
    assert result["errors"] == [] and result["show"] == "c" and result["statesOffered"]
    assert result["neuron"] == (f"{j} (top-KL of h, rank {int(top.kl_rank)}; without it perplexity "
                                f"{top.perplexity_change_pct:+.2f} %)")
    assert " · h " in result["tooltip"]
    # a group opened from the address: group=top or random (its view of removed neurons; by=removed may be said),
    # coloured by its effect
    removed = "layer 2 / removed: top-KL of h, random"
    opened = selftest(chromium, out, "opened", tmp_path, query={"layer": 2, "by": "removed", "group": "top"})
    assert opened["errors"] == [] and opened["line"] == "" and opened["show"] == "e"
    assert opened["view"] == removed and opened["neuron"].startswith("all 2 top-KL of h together: ")
    opened = selftest(chromium, out, "opened", tmp_path, query={"group": "random"})  # the first layer's
    assert opened["errors"] == [] and opened["line"] == "" and opened["show"] == "e"
    assert opened["view"] == "layer 1 / removed: top-KL of h, random"
    assert opened["neuron"].startswith(f"all {len(neurons)} random together: {' '.join(map(str, neurons))} ")
    # what the page does not offer is said, and the page opens as without it
    plain = selftest(chromium, out, "opened", tmp_path)
    for query, line in (({"layer": 2, "group": "all"}, "group=all: choose top or random"),
                        ({"layer": 1, "by": "h", "group": "top"},
                         "group=top of layer 1 ranked by KL of h is not offered on this page")):
        unmet = selftest(chromium, out, "opened", tmp_path, query=query)
        assert unmet["errors"] == [] and unmet["line"] == line, unmet
        if "by" in query:
            assert (unmet["view"], unmet["neuron"]) == (plain["view"], plain["neuron"])
        else:  # layer 2 is offered: its first view
            assert unmet["view"] == "layer 2 / KL of h"


def locate(views: list[dict], layer=None, by=None, neuron=None, group=None) -> tuple[int, int] | None:
    """The view and row an address's layer, by, neuron or group (strings) open, as the page's opening options are
    documented: the first view of that layer ranked by KL of that state ("removed": of removed neurons) that offers
    that neuron or group (top, random: only views of removed neurons hold them); in it that row, else the first."""
    for k, v in enumerate(views):
        if (layer is not None and str(v["layer"]) != layer) or (group is not None and not v.get("ablated")) or (
                by is not None and (not v.get("ablated") if by == "removed" else v.get("ablated") or v["state"] != by)):
            continue
        for j, r in enumerate(v["neurons"]):
            if (r["neuron"] is None and r["group"] == f"{group} all" if group is not None
                    else neuron is None or str(r["neuron"]) == neuron):
                return k, 0 if neuron is None and group is None else j
    return None


@pytest.mark.browser
def test_browser_the_address_follows_the_view_and_opens_it_again(chromium, tiny, divergence_csv, ablation,  # noqa: F811
                                                                 tmp_path):
    """Each change the reader makes (the menus, the search box, the checkbox, a click in the ranking) is written to the
    address of the page opened from a file, as users open it (history.replaceState): only what the page would not open
    on without it (of layer, by and neuron or group, none that could be left out), any other parameter (selftest)
    kept; the address written opens the same view. As a data: address, as the report embeds it, where
    replaceState throws, the address stays and the page works alike."""
    from test_explorer import address_query, data_selftest

    h5, _ = ablation
    out = tmp_path / "page.html"
    build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", ablation_path=h5)
    views = _page_data(out.read_text(encoding="utf-8"))["views"]
    result = selftest(chromium, out, "address", tmp_path)
    assert result["errors"] == [], result["errors"]
    steps = {s["did"]: s for s in result["steps"]}
    assert list(steps) == ["view", "neuron", "show p", "show the other state", "scale", "search", "ignore case",
                           "ranking", "group", "back"]
    written = {s["did"]: address_query(s["address"]) for s in result["steps"]}
    assert all(q.pop("selftest") == "address" for q in written.values())
    assert written["view"] == {"layer": "2", "by": "c"}  # its first neuron, coloured by c as the view ranks by c
    neuron = {k: v for k, v in written["neuron"].items() if k in ("layer", "by", "neuron")}
    assert written["show p"] == {**neuron, "show": "p"} and written["show the other state"] == {**neuron, "show": "h"}
    assert written["scale"] == {**neuron, "show": "h", "scale": "range"}  # the page's own scale is median
    assert written["ignore case"] == {**written["search"], "ignorecase": "1"} and written["search"]["search"] == "the"
    # a group removed together: its layer and the group (only a view of removed neurons has one; its effect shown)
    assert written["group"] == {"layer": "2", "group": "random", "scale": "range", "search": "the", "ignorecase": "1"}
    assert written["back"] == {}
    for did, query in written.items():  # layer, by and neuron or group: none could be left out
        named = {k: v for k, v in query.items() if k in ("layer", "by", "neuron", "group")}
        found = locate(views, **named)
        assert found is not None, did
        assert all(locate(views, **{k: v for k, v in named.items() if k != left}) != found for left in named), did
    for step in result["steps"]:
        assert step["hash"] == ""
        again = selftest(chromium, out, "", tmp_path, address=step["address"])
        assert again["errors"] == [], again["errors"]
        assert {k: again[k] for k in step["shown"]} == step["shown"], (step, again)
    group = steps["group"]["shown"]
    assert group["show"] == "e" and group["neuron"].startswith("all 2 random together")
    inside = data_selftest(chromium, out, {"selftest": "address"}, tmp_path)
    assert inside["errors"] == []
    assert [s["address"] for s in inside["steps"]] == ["?selftest=address"] * len(steps)
    assert [s["shown"] for s in inside["steps"]] == [s["shown"] for s in result["steps"]]


@pytest.mark.workflow
def test_the_tiny_runs_pages_offer_the_removed_neurons_unless_switched_off(tiny_run, tiny_workdir):
    res = tiny_run / "pristine" / "results"
    for model in ("d0.0_r0", "d0.5_r0"):  # the tiny config's explorers; every model is ablated on test
        text = (res / f"explorer/neurons/{model}_test.html").read_text(encoding="utf-8")
        data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', text, flags=re.S).group(1))
        table = read_ablation_table(res / f"ablation/{model}/test.csv")
        singles = table[table.group.isin(["top", "random"])]
        offered = [(v["layer"], r["neuron"], r["group"]) for v in data["views"] if v.get("ablated") for r in v["neurons"]
                   if r["neuron"] is not None]
        assert offered == [(r.layer, int(r.neurons), r.group) for r in singles.itertuples()]
        together = [(v["layer"], r["group"], " ".join(map(str, r["removed"]))) for v in data["views"]
                    if v.get("ablated") for r in v["neurons"] if r["neuron"] is None]
        groups = table[~table.group.isin(["top", "random"])]
        assert sorted(together) == sorted((r.layer, r.group, r.neurons) for r in groups.itertuples()) and together
        effects = single_removal_effects(res / f"ablation/{model}/test.h5")
        for layer, j, _ in offered:
            np.testing.assert_allclose(decode(data["series"][f"{layer}:{j}"]["effect"])[1:], effects[(layer, j)][1:],
                                       atol=np.ptp(effects[(layer, j)][1:]) / LEVELS / 2 + 1e-9)
    # switched off: the pages are rebuilt without the ablation, and wait for no ablation job
    edit_yaml(tiny_workdir / "tests/config/tiny.yaml", lambda c: c["neuron_explorer"].update(ablation=False))
    planned = planned_jobs(tiny_workdir)
    assert sorted(j.wildcards["model"] for j in planned if j.rule == "neuron_explorer") == ["d0.0_r0", "d0.5_r0"]
    assert {j.rule for j in planned} == {"neuron_explorer"}, planned
    assert not [i for j in planned for i in j.inputs if "results/ablation/" in i]


@pytest.mark.browser
def test_browser_opens_on_the_neuron_view_and_colouring_the_address_names(chromium, page, tmp_path):  # noqa: F811
    data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page.read_text(encoding="utf-8"),
                                flags=re.S).group(1))
    layer2_c = data["views"][3]
    assert (layer2_c["layer"], layer2_c["state"]) == (2, "c")
    neuron = layer2_c["neurons"][1]["neuron"]
    # the neuron may also be among layer 2's top of h: by=c picks the view ranked by c
    opened = selftest(chromium, page, "opened", tmp_path,
                      query={"layer": 2, "by": "c", "neuron": neuron, "show": "h", "scale": "range"})
    assert opened["errors"] == [] and opened["line"] == ""
    assert opened["view"] == "layer 2 / KL of c" and opened["neuron"].startswith(f"{neuron} (rank 2, ")
    assert (opened["show"], opened["scale"]) == ("h", "range")
    # a view ranked by KL of c colours by c, as its line gives c's rank, mean and std (h only where show=h asks)
    by_c = selftest(chromium, page, "opened", tmp_path, query={"layer": 2, "by": "c", "neuron": neuron})
    assert by_c["errors"] == [] and by_c["view"] == "layer 2 / KL of c" and by_c["show"] == "c"
    fallback = selftest(chromium, page, "opened", tmp_path, query={"layer": 2, "by": "c", "show": "e"})
    assert fallback["show"] == "c" and fallback["line"].startswith("show=e is not offered for this neuron")
    # what the page does not offer is said, and the page opens as without it
    plain = selftest(chromium, page, "opened", tmp_path)
    missing = selftest(chromium, page, "opened", tmp_path, query={"layer": 1, "neuron": 99999, "scale": "log"})
    assert plain["errors"] == [] and missing["errors"] == []
    assert missing["line"] == ("neuron 99999 of layer 1 is not offered on this page; "
                               "scale=log: choose median, symmetric or range")
    assert (missing["view"], missing["neuron"], missing["scale"]) == (plain["view"], plain["neuron"], plain["scale"])
    # a name the page has no option of (the cluster explorer's colour=, state=) is said, with the page's options
    foreign = selftest(chromium, page, "opened", tmp_path, query={"colour": "p", "state": "c"})
    options = "(layer, by, neuron, group, show, scale, search, ignorecase)"
    assert foreign["errors"] == [] and foreign["line"] == f"colour=, state= are no options of this page {options}"
    assert (foreign["view"], foreign["neuron"], foreign["show"]) == (plain["view"], plain["neuron"], plain["show"])
    no_effect = selftest(chromium, page, "opened", tmp_path, query={"show": "e", "search": "the"})
    assert no_effect["errors"] == [] and no_effect["show"] == "h"
    assert no_effect["line"].startswith("show=e is not offered for this neuron · ")


def _page_data(page: str) -> dict:
    return json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page, flags=re.S).group(1))


def test_the_reports_page_offers_as_many_top_neurons_as_fit_and_every_removed_one(tiny, divergence_csv, ablation,
                                                                                tmp_path):
    """The one-file report embeds a page as a data: address, which Chromium shows only up to 2 MB: a page over the
    limit goes into the report offering fewer top neurons, the most that fit, and still every removed one."""
    h5, _ = ablation
    out, small = tmp_path / "page.html", tmp_path / "report.html"
    size = build_neuron_explorer(tiny.activations, divergence_csv, out, K, 30, "t", ablation_path=h5,
                                 report_output=small)
    assert small.read_bytes() == out.read_bytes() and len(out.read_bytes()) == size  # it fits: the page itself
    page = out.read_text(encoding="utf-8")
    full = _page_data(page)
    data = neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=h5)
    data["scale"] = full["scale"]

    def offered(d: dict) -> tuple[list, list]:
        top = [[r["neuron"] for r in v["neurons"]] for v in d["views"] if not v.get("ablated")]
        return top, [v for v in d["views"] if v.get("ablated")]

    top, removed = offered(full)
    assert removed and all(len(t) == K for t in top)
    limit = len(page.encode()) - 1
    for want in range(K - 1, 0, -1):  # each limit just below the last page: one neuron fewer, the most that fit
        small_page, k = report_page(data, TEMPLATE, page, "results/p.html", limit=limit)
        assert k == want and len(small_page.encode()) <= limit, (limit, k)
        got = _page_data(small_page)
        got_top, got_removed = offered(got)
        assert got_top == [t[:k] for t in top] and got_removed == removed  # the top k, and every removed neuron
        wanted = {f"{v['layer']}:{r['neuron']}" if r["neuron"] is not None else r["series"]
                  for v in got["views"] for r in v["neurons"]}
        assert set(got["series"]) == wanted and all(got["series"][key] == full["series"][key] for key in wanted)
        assert {key for key in full["series"] if key not in wanted}  # dropped: the neurons no longer offered
        assert (f"the top {k} neurons of each layer and state and the removed ones, to fit this report; every "
                "neuron offered: results/p.html") in got["title"]
        limit = len(small_page.encode()) - 1
    # not even one neuron fits: a note naming the whole page, not a page that shows nothing
    note, k = report_page(data, TEMPLATE, page, "results/p.html", limit=limit)
    assert k == 0 and "results/p.html" in note and "lstmscope-data" not in note and len(note) < 2000
    assert "even offering a single top neuron of each layer and state and the removed ones" in note
    assert "Made by" not in note  # data without a provenance record: no line for it
    data["provenance"] = full["provenance"]  # the page's record, as build_neuron_explorer gives it
    note, k = report_page(data, TEMPLATE, page, "results/p.html", limit=limit)
    assert k == 0 and html.escape(provenance_line(full["provenance"])) in note and full["provenance"]["models"]
    only_removed = {**data, "views": removed}  # nothing to leave out: said so
    note, k = report_page(only_removed, TEMPLATE, page, "results/p.html", limit=limit)
    assert k == 0 and "it offers no top neurons to leave out" in note


@pytest.mark.browser
def test_browser_the_reports_page_with_fewer_neurons_works(chromium, tiny, divergence_csv, ablation,  # noqa: F811
                                                           tmp_path):
    h5, _ = ablation
    data = neuron_explorer_data(tiny.activations, divergence_csv, K, 30, "t", ablation_path=h5)
    data["scale"] = "median"
    from lstmscope.html_page import render_page

    page = render_page(data, TEMPLATE)
    small_page, k = report_page(data, TEMPLATE, page, "results/p.html", limit=len(page.encode()) - 1)
    assert k == K - 1
    out = tmp_path / "small.html"
    out.write_text(small_page, encoding="utf-8")
    neuron = _page_data(small_page)["views"][1]["neurons"][0]["neuron"]  # layer 1, c
    result = selftest(chromium, out, f"1:{neuron}:c:symmetric", tmp_path)
    assert result["errors"] == [] and result["spans"] == TEXT.tokens

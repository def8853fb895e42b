"""The cluster explorer: one offline HTML file; rendered in headless Chromium (Debian's chromium)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import skip_or_fail
from embedding_data import real_activations, real_cluster_tables, write_activations
from lstmscope.cluster import read_clusters, single_linkage
from lstmscope.activations_file import ActivationsError
from lstmscope.explorer import SCALE, build_explorer, explorer_data, render_explorer
from lstmscope.explorer import TEMPLATE as EXPLORER_TEMPLATE
from lstmscope.html_page import render_page
from lstmscope.neuron_explorer import TEMPLATE as NEURON_TEMPLATE
from lstmscope.vocabulary import read_tokens
from wikitext_data import split_path


@pytest.fixture(scope="module")
def tables():
    return real_cluster_tables()


@pytest.fixture(scope="module")
def page(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer") / "d0.0_r0_test.html"
    build_explorer(tables, out, "explorer <d0.0_r0> & test", context_tokens=5)
    return out


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (or $CHROMIUM); the test skips without it, except on CI (CI=true) where it fails."""
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    skip_or_fail("headless Chromium not found (apt-get install chromium)")


def js_p(p: float) -> str:
    """p as both explorers write it: three significant digits, below 0.001 as JavaScript's toExponential(2)."""
    return f"{p:#.3g}" if p >= 0.001 else re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{p:.2e}")


def selftest(browser: str, path: Path, word: str, tmp_path: Path, budget_ms: int = 20000,
             query: dict | None = None, window: tuple[int, int] = (1280, 900), address: str | None = None) -> dict:
    """Open ``path?selftest=word`` (and ``query``'s parameters; or ``path`` followed by ``address``, a query such as
    "?layer=1&selftest=x", as it is) in headless Chromium with a window of ``window`` pixels; return what the page's
    test hook wrote."""
    url = path.resolve().as_uri() + (address if address is not None
                                     else "?" + urllib.parse.urlencode({"selftest": word, **(query or {})}))
    return open_selftest(browser, url, tmp_path, budget_ms, window)


def data_selftest(browser: str, path: Path, query: dict, tmp_path: Path) -> dict:
    """Open the page as the one-file report embeds it, a ``data:`` address (an opaque origin, where
    history.replaceState throws), followed by ``query`` (the page's location.search; the page's own "?", "#" and "%"
    escaped, so that only this one starts the query); return what the page's test hook wrote."""
    page = path.read_text(encoding="utf-8")
    for char, code in (("%", "%25"), ("#", "%23"), ("?", "%3F"), ("\n", "%0A"), ("\r", "%0D"), ("\t", "%09")):
        page = page.replace(char, code)
    url = "data:text/html;charset=utf-8," + page + "?" + urllib.parse.urlencode(query)
    assert len(url.encode()) < 120_000  # one argument of the command line (Linux: 128 KiB at most)
    return open_selftest(browser, url, tmp_path)


def address_query(address: str) -> dict[str, str]:
    """A query written by a page (location.search) as a dict."""
    return dict(urllib.parse.parse_qsl(address.removeprefix("?"), keep_blank_values=True))


def open_selftest(browser: str, url: str, tmp_path: Path, budget_ms: int = 20000,
                  window: tuple[int, int] = (1280, 900)) -> dict:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", f"--window-size={window[0]},{window[1]}",
           f"--user-data-dir={tmp_path / 'chromium-profile'}",
           f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', r.stdout, flags=re.S)
    assert m and m.group(1).strip(), f"the page wrote no self-test result\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(html.unescape(m.group(1)))


def test_data_has_every_view_and_linkage(tables):
    data = explorer_data(tables, "t", context_tokens=4)
    first = read_clusters(tables[(1, "h", "single")])
    assert data["words"] == first["word"].tolist() and data["first_position"] == 0
    assert [(v["layer"], v["state"]) for v in data["views"]] == [(1, "h"), (1, "c"), (2, "h"), (2, "c")]
    assert data["linkages"] == ["ward", "single"]
    # the figures' colours: cluster k of the page is drawn as in the cluster figures
    from matplotlib.colors import to_rgba

    from lstmscope.cluster_figures import COLOURED, cluster_colours

    assert len(data["palette"]) == COLOURED
    assert np.allclose([to_rgba(c) for c in [*data["palette"], data["other"]]],
                       cluster_colours(np.arange(1, COLOURED + 2)))
    unequal = []
    for view in data["views"]:
        xy = np.array(view["xy"]).reshape(-1, 2)
        assert xy.shape == (500, 2) and xy.min() >= 0 and xy.max() == SCALE
        for linkage in ("single", "ward"):
            table = read_clusters(tables[(view["layer"], view["state"], linkage)])
            assert view["clusters"][linkage] == table["cluster"].tolist()
        # integer grid keeps the picture: order of points along x is unchanged up to rounding
        x = table["x"].to_numpy()
        assert np.corrcoef(x, xy[:, 0])[0, 1] > 0.9999
        # one scale for both axes, so the map keeps its shape, and the shorter axis centred on the square grid
        y = table["y"].to_numpy()
        assert np.polyfit(x, xy[:, 0], 1)[0] == pytest.approx(np.polyfit(y, xy[:, 1], 1)[0], rel=1e-3)
        short = 0 if np.ptp(x) < np.ptp(y) else 1
        assert xy[:, 1 - short].max() == SCALE and xy[:, 1 - short].min() == 0
        assert xy[:, short].min() + xy[:, short].max() == pytest.approx(SCALE, abs=2)
        unequal.append(abs(np.ptp(x) - np.ptp(y)) / max(np.ptp(x), np.ptp(y)))
    assert max(unequal) > 0.1  # a view whose axes' spans differ: the case is met


def test_page_is_self_contained_and_escapes_tokens(page):
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<img|@import|https?://", text)
    assert "<unk>" not in text and "<eos>" not in text  # tokens only inside escaped JSON
    assert "<title>explorer &lt;d0.0_r0&gt; &amp; test</title>" in text
    data = json.loads(re.search(r'<script type="application/json" id="lstmscope-data">(.*?)</script>', text,
                                flags=re.S).group(1))
    assert "<unk>" in data["words"]
    assert page.stat().st_size < 300_000


def test_tables_of_different_texts_are_refused(tables, tmp_path):
    other = read_clusters(tables[(1, "c", "ward")])
    other.loc[3, "word"] = "different"
    other.to_csv(tmp_path / "other.csv", index=False)
    mixed = dict(tables)
    mixed[(1, "c", "ward")] = tmp_path / "other.csv"
    with pytest.raises(ValueError, match=r"other\.csv: its tokens differ from those of"):
        explorer_data(mixed, "t")
    partial = {k: v for k, v in tables.items() if k != (2, "h", "ward")}
    with pytest.raises(ValueError, match="layer 2 state h: no table for linkage ward"):
        explorer_data(partial, "t")


def test_expectancy_of_each_word_comes_from_the_activations_file(tables, tmp_path):
    import h5py

    h5 = real_activations()
    data = explorer_data(tables, "t", activations=h5)
    with h5py.File(h5, "r") as f:
        natural = f["log_expectancy"][:500].astype(np.float64)
    log10 = data["expectancy"]["log10"]
    assert log10[0] is None and np.isnan(natural[0])  # the first word: no context, no value
    assert np.allclose(log10[1:], natural[1:] / np.log(10), atol=5e-4)
    from lstmscope.heatmap import expectancy_norm  # the expectancy figure's scale: the page's is the same

    assert 10 ** data["expectancy"]["lo"] == pytest.approx(expectancy_norm(np.exp(natural)).vmin, rel=1e-6)
    assert len(data["expectancy"]["lut"]) == 256 and explorer_data(tables, "t")["expectancy"] is None
    # heatmap.expectancy_floor: the scale's low end is the floor, the figures' (the values stay exact)
    floored = explorer_data(tables, "t", activations=h5, expectancy_floor=1e-3)["expectancy"]
    assert floored["lo"] == pytest.approx(-3.0) and floored["log10"] == log10
    assert floored["below"] == int((natural[1:] / np.log(10) < -3.0).sum()) and data["expectancy"]["below"] == 0
    other = write_activations(tmp_path / "other.h5", n_tokens=500, offset=1000)  # another passage of the text
    with pytest.raises(ActivationsError, match=r"other\.h5: its tokens 0\.\.499 are not the words of the cluster "
                                               r"tables"):
        explorer_data(tables, "t", activations=other)


def test_template_placeholders_are_required(tmp_path):
    (tmp_path / "t.html").write_text("<html>{{TITLE}}</html>")
    with pytest.raises(ValueError, match=r"t\.html: template has no \{\{DATA\}\} placeholder"):
        render_explorer({"title": "x"}, tmp_path / "t.html")
    (tmp_path / "t.html").write_text("<html>{{TITLE}}{{DATA}}</html>")
    with pytest.raises(ValueError, match=r"t\.html: template has no \{\{ERROR_RECORDER\}\} placeholder"):
        render_explorer({"title": "x"}, tmp_path / "t.html")


def test_a_title_or_data_holding_a_placeholder_is_kept_as_it_is(tmp_path):
    (tmp_path / "t.html").write_text("<title>{{TITLE}}</title>{{ERROR_RECORDER}}<script>{{DATA}}</script>")
    data = {"title": "a {{DATA}} b", "word": "{{TITLE}} {{ERROR_RECORDER}}"}
    page = render_page(data, tmp_path / "t.html")
    assert page.startswith("<title>a {{DATA}} b</title><script>\nwindow.lstmscopeErrors = [];")
    assert json.loads(page.rsplit("<script>", 1)[1].removesuffix("</script>")) == data


def test_a_title_of_two_lines_is_one_line_of_the_page(tmp_path):
    """cluster.space: pca gives the figures a second title line; in <title> and <h1> HTML would run the two
    together ("...linkage clusters of ..."), so they are joined by a dash."""
    (tmp_path / "t.html").write_text("<title>{{TITLE}}</title>{{ERROR_RECORDER}}<script>{{DATA}}</script>")
    page = render_page({"title": "d0.0_r0 · test\nclusters of the states' 50-d PCA"}, tmp_path / "t.html")
    assert page.startswith("<title>d0.0_r0 · test \u2014 clusters of the states&#x27; 50-d PCA</title>")


def test_a_pages_provenance_is_one_line_at_its_foot_with_the_hashes_cut_as_git_does(tmp_path):
    """The line a reader of a page sees: the commit and hashes to 12 digits (a checkout with changes keeps its
    -dirty), every model with its seed; a page without a record shows none; the template's place is optional."""
    from lstmscope.html_page import provenance_line

    record = {"lstmscope_version": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567-dirty",
              "library_sha256": "f" * 64,
              "models": {"d0.2_r1": {"dropout": 0.2, "replicate": 1, "seed": 99, "checkpoint_sha256": "ab" * 32}}}
    said = ("Made by lstmscope 0.1.0 (git 0123456789ab-dirty, library ffffffffffff…) from model d0.2_r1 (dropout 0.2, "
            "replicate 1, seed 99, checkpoint SHA-256 abababababab…).")
    assert provenance_line(record) == said and provenance_line(None) == ""
    two = {**record, "models": {**record["models"], "d0.8_r0": {"dropout": 0.8, "replicate": 0, "seed": 7,
                                                                "checkpoint_sha256": "cd" * 32}}}
    assert provenance_line(two).endswith("from models d0.2_r1 (dropout 0.2, replicate 1, seed 99, checkpoint SHA-256 "
                                         "abababababab…); d0.8_r0 (dropout 0.8, replicate 0, seed 7, checkpoint "
                                         "SHA-256 cdcdcdcdcdcd…).")
    (tmp_path / "t.html").write_text("<title>{{TITLE}}</title>{{ERROR_RECORDER}}<script>{{DATA}}</script>"
                                     "<footer>{{PROVENANCE}}</footer>")
    assert f"<footer>{html.escape(said)}</footer>" in render_page({"title": "t", "provenance": record},
                                                                  tmp_path / "t.html")
    assert "<footer></footer>" in render_page({"title": "t"}, tmp_path / "t.html")
    (tmp_path / "t.html").write_text("<title>{{TITLE}}</title>{{ERROR_RECORDER}}<script>{{DATA}}</script>")
    assert json.loads(render_page({"title": "t", "provenance": record}, tmp_path / "t.html")
                      .rsplit("<script>", 1)[1].removesuffix("</script>"))["provenance"] == record


@pytest.mark.parametrize("template", [EXPLORER_TEMPLATE, NEURON_TEMPLATE], ids=["clusters", "neurons"])
def test_both_explorers_record_errors_before_their_own_script(template):
    page = render_page({"title": "t"}, template)
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)
    assert scripts[0].strip().startswith("window.lstmscopeErrors = [];") and "console.error = function" in scripts[0]
    # then the address writer both pages share (html_page.ADDRESS_WRITER), the data, the page's own script
    assert scripts[1].strip().startswith("window.lstmscopeAddress = function (own, testing) {")
    assert len(scripts) == 4


@pytest.mark.browser
def test_browser_records_errors_and_console_errors(chromium, tmp_path):
    (tmp_path / "t.html").write_text(
        "<html><head><title>{{TITLE}}</title>{{ERROR_RECORDER}}</head><body><pre id=\"selftest\"></pre>"
        "<script type=\"application/json\">{{DATA}}</script><script>"
        "console.error('bad', 1); setTimeout(function () { undefinedFunction(); }, 0);"
        "setTimeout(function () { document.getElementById('selftest').textContent = "
        "JSON.stringify({errors: window.lstmscopeErrors}); }, 50);</script></body></html>")
    out = tmp_path / "page.html"
    out.write_text(render_page({"title": "t"}, tmp_path / "t.html"))
    errors = selftest(chromium, out, "", tmp_path)["errors"]
    assert len(errors) == 2 and errors[0] == "bad 1" and "undefinedFunction is not defined" in errors[1], errors


@pytest.mark.browser
def test_browser_starts_on_the_deepest_cell_state_or_the_view_the_url_names(chromium, page, tables, tmp_path):
    said, steps = {}, {}

    def start(path, **query):
        result = selftest(chromium, path, ".", tmp_path, query=query)
        assert result["errors"] == []
        s = result["start"]
        said[(path.name, *sorted(query.items()))] = result["opened"]
        steps[(path.name, *sorted(query.items()))] = result["steps"]
        return s["layer"], s["state"], s["linkage"]

    assert start(page) == (2, "c", "ward")
    assert start(page, layer="1") == (1, "c", "ward")  # a layer alone keeps the state
    assert start(page, state="h") == (2, "h", "ward")
    assert start(page, layer="1", state="h", linkage="single") == (1, "h", "single")
    # views where layer 1 has no c: a layer alone takes that layer's view rather than another layer's
    partial = tmp_path / "partial.html"
    build_explorer({k: v for k, v in tables.items() if k[:2] in ((1, "h"), (2, "c"))}, partial, "t", context_tokens=5)
    assert start(partial) == (2, "c", "ward")
    assert start(partial, layer="1") == (1, "h", "ward")
    assert start(partial, layer="1", state="c") == (1, "h", "ward")  # a state the layer lacks: the layer is kept
    # what the address asked for and the page does not offer is said beside the search box, as the neuron explorer
    # does; what it offers, nothing
    assert said[(partial.name, ("layer", "1"), ("state", "c"))] == "state=c is not embedded for layer 1"
    assert start(page, cluster="9999") == (2, "c", "ward")  # no such cluster: said, nothing listed
    assert said[(page.name, ("cluster", "9999"))] == "cluster=9999 is not a cluster of layer 2 c, ward"
    assert start(page, layer="5", linkage="average", colour="x", ignorecase="yes") == (2, "c", "ward")
    unmet = (page.name, ("colour", "x"), ("ignorecase", "yes"), ("layer", "5"), ("linkage", "average"))
    assert said[unmet] == ("layer=5 is not embedded on this page; linkage=average: choose ward or single; colour=x: "
                           "choose cluster; ignorecase=yes: choose 1")
    # a name the page has no option of (here the neuron explorer's) is said, with the page's options
    assert start(page, show="p", neuron="50") == (2, "c", "ward")
    options = "(layer, state, linkage, colour, cluster, search, ignorecase)"
    unknown = (page.name, ("neuron", "50"), ("show", "p"))
    assert said[unknown] == f"show=, neuron= are no options of this page {options}"
    assert address_query(steps[unknown][0]["address"]) == {"linkage": "single", "selftest": "."}  # not passed on
    assert start(page, show="p") == (2, "c", "ward")
    assert said[(page.name, ("show", "p"))] == f"show= is no option of this page {options}"
    # the reader's first change writes the address anew: what the page did not honour is gone from it
    assert address_query(steps[unmet][0]["address"]) == {"linkage": "single", "selftest": "."}
    offered = [(page.name,), (page.name, ("layer", "1")), (page.name, ("state", "h")), (partial.name,),
               (partial.name, ("layer", "1"))]
    assert [said[key] for key in offered] == [""] * len(offered)  # what the page offers: nothing said


@pytest.mark.browser
def test_browser_titles_each_cluster_with_its_size_one_token_in_the_singular(chromium, tables, tmp_path):
    """Every cluster of a view listed in turn is titled with its size: the real single-linkage table with one token
    made a cluster of its own (an outlier, as single linkage makes on larger texts) reads "1 token"."""
    table = read_clusters(tables[(2, "c", "single")])
    table.loc[table.index[-1], "cluster"] = table["cluster"].max() + 1
    own = tmp_path / "layer2_c_single.csv"
    table.to_csv(own, index=False)
    views = {**tables, (2, "c", "single"): str(own)}
    path = tmp_path / "one.html"
    build_explorer(views, path, "t", context_tokens=5)
    result = selftest(chromium, path, ".", tmp_path)
    assert result["errors"] == []
    sizes = table["cluster"].value_counts()
    assert sizes.min() == 1
    # and, where some of its tokens stand next to each other, with its number of runs (one run in the singular)
    starts = table.sort_values("position").groupby("cluster")["position"].apply(lambda p: int((p.diff() != 1).sum()))
    assert 1 in set(starts[sizes > 1])
    # the points of a cluster of fewer than 10 are ringed (a dark pixel a ring's radius away), others not
    rings = result["rings"]
    assert any(r["small"] for r in rings) and any(not r["small"] for r in rings)
    for r in rings:
        assert (sum(r["rgba"][:3]) < 3 * 160 and r["rgba"][3] > 100) == r["small"], r
    assert result["clusterTitles"] == [
        f"Cluster {c}: {sizes[c]} token{'s' * bool(sizes[c] != 1)}"
        + (f" in {starts[c]} run{'s' * bool(starts[c] != 1)}" if starts[c] < sizes[c] else "")
        for c in sorted(sizes.index)]


def assert_points_painted(views, tables):
    """Where a point stands alone on the canvas, its pixel is its cluster's colour at 85 % opacity (the figures'
    colours): the points are painted, not only counted."""
    from lstmscope.cluster_figures import cluster_colours

    for view in views:
        labels = read_clusters(tables[(view["layer"], view["state"], view["linkage"])])["cluster"].to_numpy()
        assert len(view["pixels"]) == 5, view["pixels"]
        for pixel in view["pixels"]:
            rgba, want = np.array(pixel["rgba"]), cluster_colours(labels[[pixel["index"]]])[0, :3] * 255
            assert np.abs(rgba[:3] - want).max() <= 3 and abs(rgba[3] - 0.85 * 255) <= 2, (view["layer"], pixel)


def assert_matches_painted(pixels, expected):
    """The centre of a searched token's circle, where no other match's circle reaches it: one colour, opaque, far
    from every cluster's (the figures' palette and the rest's grey; the red used before read as cluster 4's)."""
    from matplotlib.colors import to_rgb

    from lstmscope.colours import CLUSTER_PALETTE, OTHER_CLUSTERS

    clusters = np.array([to_rgb(c) for c in (*CLUSTER_PALETTE, OTHER_CLUSTERS)])
    spacing = min(np.linalg.norm(a - b) for k, a in enumerate(clusters) for b in clusters[k + 1:])
    assert pixels and len({tuple(p["rgba"]) for p in pixels}) == 1, pixels
    for pixel in pixels:
        assert pixel["index"] in expected and pixel["rgba"][3] == 255, pixel
        distance = np.linalg.norm(clusters - np.array(pixel["rgba"][:3]) / 255, axis=1).min()
        # farther from every cluster's colour than the palette's nearest two are from each other (0.27), by half again
        assert distance > 1.5 * spacing, (pixel, distance, spacing)


@pytest.mark.browser
@pytest.mark.parametrize("word", [".", "<unk>"])
def test_browser_renders_every_point_and_search_highlights_the_word(chromium, page, tables, word, tmp_path):
    words = read_clusters(tables[(1, "h", "single")])["word"]
    expected = [int(i) for i in np.flatnonzero(words.to_numpy() == word)]
    assert len(expected) > 5
    result = selftest(chromium, page, word, tmp_path)
    assert result["errors"] == []
    assert result["points"] == 500
    assert [(v["layer"], v["state"], v["linkage"]) for v in result["views"]] == [
        (layer, state, linkage) for layer, state in ((1, "h"), (1, "c"), (2, "h"), (2, "c"))
        for linkage in ("ward", "single")]
    assert all(v["drawn"] == v["painted"] == 500 and v["clusters"] == 8 for v in result["views"]), result["views"]
    assert_points_painted(result["views"], tables)
    assert result["search"]["positions"] == expected
    assert result["search"]["highlighted"] == len(expected)
    assert_matches_painted(result["search"]["pixels"], expected)
    assert result["hover"]["word"] == word  # tooltip shows the token as text, <unk> included
    first = read_clusters(tables[(2, "c", "ward")])  # the starting view: the deepest layer's c, ward
    held = first.loc[expected, "cluster"].value_counts()
    held = sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))  # the most matches first, ties by number
    listed = ", ".join(f"{k} ({v})" for k, v in held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    assert result["search"]["label"] == (f"{len(expected)} of 500 tokens \u00b7 in cluster"
                                         f"{'s' if len(held) > 1 else ''} {listed}")
    cluster = int(first.loc[expected[0], "cluster"])
    assert result["click"]["cluster"] == cluster
    assert result["click"]["size"] == int((first["cluster"] == cluster).sum())
    # one line per run of consecutive tokens of the cluster, each of its tokens marked, its positions in front
    members = first.loc[first["cluster"] == cluster, "position"].sort_values().tolist()
    runs = []
    for position in members:
        if runs and position == runs[-1][1] + 1:
            runs[-1][1] = position
        else:
            runs.append([position, position])
    assert len(runs) < len(members)  # some consecutive: the case is met
    assert result["click"]["rows"] == result["click"]["listed"] == len(runs) <= 500 and result["click"]["more"] is None
    assert result["click"]["lines"] == [[f"{a}\u2013{b}" if b > a else str(a), b - a + 1] for a, b in runs]
    assert result["click"]["title"] == f"Cluster {cluster}: {len(members)} tokens in {len(runs)} runs"
    # clicking a point lists its cluster; clicking it again clears the list
    assert result["canvasClicks"][0].startswith("Cluster ") and result["canvasClicks"][1] == "Tokens"
    # the pointer on a point picks it (or a point at the same place, the earlier), unless it is on a match's circle
    # (radius "match"): then that match, the nearest (the earlier)
    probe = result["probe"]
    xy = np.array(probe["screen"], dtype=np.float64).reshape(-1, 2)
    matches = np.array(probe["matches"])
    assert matches.tolist() == expected
    between = 0
    for j in range(len(xy)):
        d = ((xy - xy[j]) ** 2).sum(axis=1)
        near = matches[d[matches] < probe["match"] ** 2]
        pool = near if len(near) else np.flatnonzero(d < probe["hover"] ** 2)
        want = int(pool[np.lexsort((pool, d[pool]))[0]])
        assert probe["picked"][j] == want, j
        between += bool(len(near) == 0 and (d[matches] < probe["hover"] ** 2).any())
    # points with a match near (within the hover distance) but not under the pointer: met with "." (its 50 tokens)
    assert between > 0 or word != "."
    # each row's tooltip: the cluster's most distinctive words, as counted here from the view's table, in Table 5.1's
    # order (ties: more tokens in the cluster, then the word met first in it)
    total = first["word"].value_counts()
    assert len(result["legendTitles"]) == first["cluster"].nunique(), result["legendTitles"]
    for row, title in zip(sorted(first["cluster"].unique()), result["legendTitles"]):
        members = first[first.cluster == row].sort_values("position")["word"].tolist()
        own = pd.Series(members).value_counts()
        met = {w: members.index(w) for w in own.index}
        want = sorted((w for w in own.index if own[w] >= 3), key=lambda w: (-own[w] / total[w], -own[w], met[w]))[:5]
        if not want:
            assert title == "no word with 3 or more tokens in the cluster", title
            continue
        listed = re.findall(r"(\S+) (\d+)/(\d+)", title.split(": ", 1)[1])
        assert [(w, int(c), int(n)) for w, c, n in listed] == [(w, own[w], total[w]) for w in want], title
    # another linkage: no cluster is selected, so the panel shows the hint, not the old cluster's tokens
    assert result["afterViewChange"]["title"] == "Tokens" and result["afterViewChange"]["rows"] == 0
    assert result["afterViewChange"]["text"].startswith("Hover a point to see its word in context")


@pytest.mark.browser
def test_browser_colours_each_point_by_the_expectancy_as_the_heatmap_does(chromium, page, tables, tmp_path):
    """With the activations file the page can colour every point by p(word | preceding words): the colours of the
    expectancy heatmap (matplotlib's coolwarm on a log scale from the smallest p, at most 0.1, to 1)."""
    import h5py
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, to_rgb

    h5 = real_activations()
    with_p = tmp_path / "p.html"
    build_explorer(tables, with_p, "t", context_tokens=5, activations=h5)
    result = selftest(chromium, with_p, ".", tmp_path)
    assert result["errors"] == []
    # the canvas shown at the size its points were laid out for, in every view and after switching to p (whose colour
    # bar changes the header's height): where the two differ, the pointer names another point than the one under it
    for fit in [v["fit"] for v in result["views"]] + [result["expectancy"]["fit"], result["expectancy"]["other"]["fit"]]:
        shown_w, shown_h, laid_w, laid_h = fit
        assert abs(shown_w - laid_w) < 1 and abs(shown_h - laid_h) < 1, fit
    with h5py.File(h5, "r") as f:
        p = f["expectancy"][:500].astype(np.float64)
    known = p[1:]
    expected = colormaps["coolwarm"](LogNorm(vmin=min(known.min(), 0.1), vmax=1.0)(known))[:, :3]
    drawn = np.array([to_rgb(c) for c in result["expectancy"]["fills"]])
    assert result["expectancy"]["mode"] == "p" and result["colourMenu"] is True
    assert result["expectancy"]["scaleShown"] is True and result["expectancy"]["scaleShownAfter"] is False
    # the bar itself says that its colours run on a log scale (as the neuron explorer's), not only its hover text
    assert result["expectancy"]["scale"].split(" | ")[0].endswith("log scale"), result["expectancy"]["scale"]
    assert np.abs(drawn[1:] - expected).max() < 0.02  # one step of the 256 colours at most
    assert to_rgb(result["expectancy"]["fills"][0]) == pytest.approx(to_rgb("#b0b0b0"))  # no context: grey
    # what the canvas holds where a point stands alone: its colour, drawn at 85 % opacity
    assert len(result["expectancy"]["pixels"]) == 5
    for pixel in result["expectancy"]["pixels"]:
        i, rgba = pixel["index"], np.array(pixel["rgba"])
        want = np.array(to_rgb("#b0b0b0") if i == 0 else expected[i - 1]) * 255
        assert np.abs(rgba[:3] - want).max() <= 3 and abs(rgba[3] - 0.85 * 255) <= 2, (i, rgba, want)
    # the scale's low end: here (no floor given) the smallest p of these tokens, as JavaScript writes it
    assert f"log scale from p {js_p(known.min())} to 1;" in result["expectancy"]["scale"]

    def medians(legend, key):  # each cluster's median p in the list, against the view's table
        table = read_clusters(tables[key])
        assert len(legend) == table["cluster"].nunique(), legend
        for row in legend[:3]:
            m = re.match(r"(\d+) \((\d+)\) p ([0-9.e+-]+)", row)
            assert m, row
            members = (table["cluster"] == int(m.group(1))).to_numpy() & np.isfinite(p)
            assert int(m.group(2)) == (table["cluster"] == int(m.group(1))).sum()
            assert float(m.group(3)) == pytest.approx(10 ** np.median(np.log10(p[members])), rel=0.05)

    medians(result["expectancy"]["legend"], (2, "c", "single"))  # the view drawn then: deepest c, last linkage
    other = result["expectancy"]["other"]  # another view, still by expectancy
    assert other["mode"] == "p" and (other["layer"], other["state"], other["linkage"]) == (1, "h", "ward")
    medians(other["legend"], (1, "h", "ward"))
    i = result["hover"]["index"]
    shown = re.search(r", p ([0-9.e+-]+):", result["hover"]["text"])
    assert shown and float(shown.group(1)) == pytest.approx(p[i], rel=0.05, abs=5e-4)
    # p of <unk> is the probability of any word outside the vocabulary: the tooltip says so
    unk = selftest(chromium, with_p, "<unk>", tmp_path)
    assert unk["errors"] == [] and ", p(any word outside the vocabulary) " in unk["hover"]["text"]
    assert ", p(any word" not in result["hover"]["text"]
    # opened by expectancy with a search (the URL's colour and search together)
    opened = selftest(chromium, with_p, "the", tmp_path, query={"colour": "p", "search": "the"})
    assert opened["errors"] == [] and opened["start"]["colour"] == "p"
    # with heatmap.expectancy_floor: the colours run from the floor to 1, lower p take its colour (the figures')
    floor = float(np.quantile(known, 0.3))
    floored = tmp_path / "floor.html"
    build_explorer(tables, floored, "t", context_tokens=5, activations=h5, expectancy_floor=floor)
    clipped = selftest(chromium, floored, ".", tmp_path)
    assert clipped["errors"] == []
    want = colormaps["coolwarm"](LogNorm(vmin=floor, vmax=1.0)(np.maximum(known, floor)))[:, :3]
    got = np.array([to_rgb(c) for c in clipped["expectancy"]["fills"][1:]])
    assert np.abs(got - want).max() < 0.02 and np.abs(got[known < floor] - colormaps["coolwarm"](0)[:3]).max() < 0.02
    assert f"log scale from p {js_p(floor)} to 1 (lower p in its colour);" in clipped["expectancy"]["scale"]
    # without the activations file: no expectancy, no colour menu, clusters only
    plain = selftest(chromium, page, ".", tmp_path)
    assert plain["errors"] == [] and "expectancy" not in plain and plain["colourMenu"] is False
    assert ", p " not in plain["hover"]["text"]
    assert plain["start"]["colour"] == "cluster"


@pytest.mark.browser
def test_browser_the_address_follows_the_view_and_opens_it_again(chromium, tables, tmp_path):
    """Each change the reader makes (the menus, the search box, the checkbox) is written to the address of the page
    opened from a file, as users open it (history.replaceState): only what differs from the page's own opening view,
    any other parameter (selftest) kept; the address written opens the same view. As a data: address, as the report
    embeds it, where replaceState throws, the address stays and the page works alike."""
    with_p = tmp_path / "p.html"
    build_explorer(tables, with_p, "t", context_tokens=5, activations=real_activations())
    result = selftest(chromium, with_p, "the", tmp_path)
    assert result["errors"] == []
    view = {"layer": "1", "state": "h", "linkage": "single"}
    listed = result["steps"][-2]["shown"]["cluster"]  # the cluster clicked (the legend's first)
    expected = {"linkage": {"linkage": "single"}, "layer": {"layer": "1", "linkage": "single"},  # layer 1 keeps c
                "state": view, "search": {**view, "search": "the"},
                "ignore case": {**view, "search": "the", "ignorecase": "1"},
                "colour": {**view, "colour": "p", "search": "the", "ignorecase": "1"},
                "cluster": {**view, "colour": "p", "cluster": str(listed), "search": "the", "ignorecase": "1"},
                "back": {}}
    assert listed > 0 and [s["did"] for s in result["steps"]] == list(expected)
    for step in result["steps"]:
        assert address_query(step["address"]) == {**expected[step["did"]], "selftest": "the"}, step
        assert step["hash"] == ""
        again = selftest(chromium, with_p, "", tmp_path, address=step["address"])
        assert again["errors"] == [] and again["start"] == step["shown"], (step, again["start"])
        assert again["opened"] == step["line"]  # nothing unmet, the same matches
    assert result["steps"][-2]["shown"] == {"layer": 1, "state": "h", "linkage": "single", "colour": "p",
                                            "cluster": listed, "search": "the", "ignorecase": True}
    assert result["steps"][-1]["shown"] == {**result["start"], "search": "", "ignorecase": False}
    inside = data_selftest(chromium, with_p, {"selftest": "the"}, tmp_path)
    assert inside["errors"] == []
    assert [s["address"] for s in inside["steps"]] == ["?selftest=the"] * len(expected)
    assert [(s["shown"], s["line"]) for s in inside["steps"]] == [(s["shown"], s["line"]) for s in result["steps"]]


def word_tables(folder: Path, words: list[str], clusters: list[int]) -> dict[tuple[int, str, str], Path]:
    """Cluster tables of every view and linkage for ``words``, the same in each: the points on a line, these
    clusters."""
    n, tables = len(words), {}
    for layer, state in ((1, "h"), (1, "c"), (2, "h"), (2, "c")):
        for linkage in ("single", "ward"):
            path = folder / f"layer{layer}_{state}_{linkage}.csv"
            pd.DataFrame({"position": np.arange(n), "word": words, "x": np.arange(n, dtype=float),
                          "y": np.zeros(n), "cluster": clusters}).to_csv(path, index=False)
            tables[(layer, state, linkage)] = path
    return tables


@pytest.mark.browser
def test_browser_legend_counts_words_named_like_javascript_properties(chromium, tmp_path):
    words = ["constructor"] * 5 + ["__proto__"] * 4 + ["toString"] * 3 + ["a"] * 8 + ["b"] * 2
    tables = word_tables(tmp_path, words, [1] * 12 + [2] * 8 + [3] * 2)
    out = tmp_path / "words.html"
    build_explorer(tables, out, "words")
    result = selftest(chromium, out, "constructor", tmp_path)
    assert result["errors"] == []
    assert result["legend"] == ["1 (12)constructor __proto__ toString", "2 (8)a", "3 (2)b"]
    from lstmscope.colours import SMALL_CLUSTER

    assert result["legendHint"] == (f"((n): the cluster's tokens; click to list them; ringed on the map: a cluster of "
                                    f"fewer than {SMALL_CLUSTER} tokens)")  # the sizes and the rings explained
    assert result["legendWords"] == [["constructor", "__proto__", "toString"], ["a"], ["b"]]  # each word boxed
    # hovering a row names its most distinctive words, as Table 5.1 does (here every word lies in one cluster)
    assert result["legendTitles"] == [
        "most distinctive (tokens in the cluster / among the tokens embedded): constructor 5/5 · __proto__ 4/4 · "
        "toString 3/3",
        "most distinctive (tokens in the cluster / among the tokens embedded): a 8/8",
        "no word with 3 or more tokens in the cluster"]
    assert result["search"]["highlighted"] == 5


@pytest.mark.browser
def test_browser_legend_breaks_ties_by_the_word_met_first_number_like_words_too(chromium, tmp_path):
    """JavaScript lists an object's number-like keys ("2001") first, in numeric order; the list's most frequent words
    break a tie by the word met first in the cluster, as Table 5.1 does, whatever the word."""
    words = ["London", "2008", "2001", "x", "London", "2008", "2001", "y", "z", "w"]
    tables = word_tables(tmp_path, words, [1] * len(words))
    out = tmp_path / "ties.html"
    build_explorer(tables, out, "ties")
    result = selftest(chromium, out, "x", tmp_path)
    assert result["errors"] == []
    assert result["legendWords"] == [["London", "2008", "2001", "x", "y"]]


@pytest.mark.browser
def test_browser_at_thesis_scale(chromium, tmp_path):
    """18 000 tokens x 4 views x 2 linkages: a few MB, drawn on a canvas, every point rendered."""
    n = 18000
    words = read_tokens(split_path("test"))[:n]
    rng = np.random.default_rng(0)
    tables = {}
    for layer, state in ((1, "h"), (1, "c"), (2, "h"), (2, "c")):
        centres = rng.uniform(-50, 50, size=(30, 2))
        xy = centres[rng.integers(0, 30, n)] + rng.normal(size=(n, 2)) * 3
        for linkage, k in (("single", 12), ("ward", 40)):
            path = tmp_path / f"layer{layer}_{state}_{linkage}.csv"
            pd.DataFrame({"position": np.arange(n), "word": words, "x": xy[:, 0], "y": xy[:, 1],
                          "cluster": single_linkage(xy, n_clusters=k) + 1}).to_csv(path, index=False)
            tables[(layer, state, linkage)] = path
    out = tmp_path / "thesis.html"
    size = build_explorer(tables, out, "thesis scale")
    assert size < 4_000_000
    result = selftest(chromium, out, "the", tmp_path, budget_ms=60000)
    assert result["errors"] == []
    assert len(result["views"]) == 8 and all(v["drawn"] == v["painted"] == n for v in result["views"])
    assert_points_painted(result["views"], tables)
    assert result["search"]["highlighted"] == sum(w == "the" for w in words)
    assert_matches_painted(result["search"]["pixels"], [i for i, w in enumerate(words) if w == "the"])
    # a cluster of more runs than one list holds: 500 listed, the rest a click away
    click = result["click"]
    assert click["listed"] == click["rows"] == 500 and click["more"].startswith("list ")
    runs = int(re.search(r" in (\d+) runs", click["title"]).group(1))
    assert click["title"].endswith(" (first 500 runs listed)") and runs > 500
    assert click["afterMore"]["rows"] == min(1000, runs)
    assert click["afterMore"]["more"] == (None if runs <= 1000 else f"list {min(500, runs - 1000)} more ({runs - 1000} not listed)")

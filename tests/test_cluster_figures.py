"""Figures 5.8-5.12 and the contiguity figure, drawn from a real run (PNG + SVG)."""
from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pandas as pd
import pytest

from embedding_data import real_cluster_tables
from lstmscope import cluster_figures as F
from lstmscope.cluster import read_clusters
from lstmscope.cluster_measures import cluster_measures, cluster_table


@pytest.fixture(scope="module")
def tables():
    return {k: read_clusters(p) for k, p in real_cluster_tables().items()}


@pytest.fixture(autouse=True)
def svg_text_as_text():
    # Keep SVG text as <text> elements so that the test can read the numbers drawn.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        yield


def svg_texts(path) -> list[str]:
    root = ET.parse(path).getroot()
    return [t.text.strip() for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text and t.text.strip()]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("dpi", [60, 200])
def test_the_svg_rasterizes_its_points_at_the_figures_dpi(tables, tmp_path, dpi):
    """The scatter layer is rasterized in the SVG (thousands of points): at figures.dpi, as in the PNG, not at
    matplotlib's default 100 whatever the setting. The embedded image's pixels per point of its box: dpi / 72."""
    import base64
    import io

    from matplotlib import image as mpimg

    F.numbered_clusters_figure(tables[(2, "c", "ward")], "t", tmp_path / "n.png", tmp_path / "n.svg", dpi=dpi)
    images = list(ET.parse(tmp_path / "n.svg").getroot().iter("{http://www.w3.org/2000/svg}image"))
    assert images, "no rasterized layer in the SVG"
    for image in images:
        href = image.get("{http://www.w3.org/1999/xlink}href") or image.get("href")
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(href.split(",", 1)[1])), format="png").shape[1]
        assert pixels / float(image.get("width")) == pytest.approx(dpi / 72, rel=0.02)


def test_numbered_clusters_carry_every_cluster_number(tables, tmp_path):
    table = tables[(2, "c", "ward")]
    F.numbered_clusters_figure(table, "layer 2 c ward", tmp_path / "n.png", tmp_path / "n.svg", dpi=60)
    texts = svg_texts(tmp_path / "n.svg")
    numbers = [int(t) for t in texts if t.isdigit()]  # a cluster drawn in pieces is numbered on each
    assert sorted(set(numbers)) == list(range(1, 9))
    assert "layer 2 c ward" in texts
    assert png_size(tmp_path / "n.png")[0] > 300


def test_numbers_sit_on_their_cluster():
    """label_anchor returns a member of the cluster, also for a ring-shaped cluster whose mean is empty."""
    angle = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    x, y = np.cos(angle) * 10, np.sin(angle) * 10
    ax, ay = F.label_anchor(x, y)
    assert np.min(np.hypot(x - ax, y - ay)) == 0


def test_a_tiny_cluster_is_ringed_and_its_number_does_not_cover_it():
    """A cluster of one or two points, or many on one spot, under its own label box would look like a number
    over nothing: a few points are ringed each, a clump is circled, and the number goes beside them."""
    rng = np.random.default_rng(3)
    big = rng.normal(size=(300, 2))
    clump = np.array([-6.0, 5.0]) + rng.normal(scale=0.05, size=(300, 2))  # many points on one spot
    table = pd.DataFrame({"x": np.r_[big[:, 0], clump[:, 0], 6.0, 6.1, -6.0],
                          "y": np.r_[big[:, 1], clump[:, 1], 5.0, 5.1, -5.0],
                          "cluster": np.r_[np.ones(300, dtype=int), np.full(300, 2), 3, 3, 4]})
    fig, ax = F.plt.subplots(figsize=(4, 4), dpi=100)
    F.draw_clusters(ax, table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts}  # the box, not its line
    assert sorted(labels) == ["1", "2", "3", "4"]
    for k in (2, 3, 4):
        points = ax.transData.transform(table.loc[table.cluster == k, ["x", "y"]].to_numpy())
        assert not any(labels[str(k)].contains(px, py) for px, py in points), f"cluster {k} hidden by its label"
    rings = [col for col in ax.collections[1:]]  # after the one scatter of all points
    assert [len(col.get_offsets()) for col in rings] == [2, 1]
    np.testing.assert_allclose(rings[0].get_offsets(), table.loc[table.cluster == 3, ["x", "y"]].to_numpy())
    (circle,) = ax.patches  # the clump's: around all of its points
    assert all(circle.contains_point(p) for p in ax.transData.transform(clump))
    assert circle.get_radius() < 1.0  # around the clump only
    # the large cluster keeps its number on one of its points
    x1, y1 = ax.transData.transform(F.label_anchor(big[:, 0], big[:, 1]))
    assert labels["1"].contains(x1, y1)
    # a number beside its points is tied to them by a line from its box to the circle's (or the rings') corner
    beside = {t.get_text(): t for t in ax.texts if t.get_text() in ("2", "3", "4")}
    for k, t in beside.items():
        assert t.arrow_patch is not None, f"cluster {k}: no line to its points"
        ends = t.arrow_patch.get_path().vertices[[0, -1]]
        corner = ax.transData.transform(t.xy)
        assert min(np.hypot(*(ends - corner).T)) < 1.0, f"cluster {k}: the line does not reach its points"
        assert any(labels[k].contains(*end) or np.hypot(*(end - labels[k].corners()).T).min() < 8 for end in ends)
    F.plt.close(fig)


def test_a_cluster_drawn_in_pieces_is_numbered_on_each_large_piece():
    """t-SNE can draw one cluster as pieces far apart: each piece holding a tenth of its points (and at least
    SMALL) gets the number too, on one of its own points, so the colour need not be matched by eye; a stray few
    points do not, nor does a cluster in one piece."""
    rng = np.random.default_rng(5)
    def blob(cx, cy, n):
        return np.column_stack([cx + rng.normal(0, 0.3, n), cy + rng.normal(0, 0.3, n)])

    pieces = [blob(0, 0, 120), blob(10, 0, 40), blob(0, 10, 6)]  # cluster 1: a large piece, a piece, a stray few
    other = blob(10, 10, 150)  # cluster 2: one piece
    points = np.vstack([*pieces, other])
    table = pd.DataFrame({"x": points[:, 0], "y": points[:, 1],
                          "cluster": np.r_[np.ones(166, dtype=int), np.full(150, 2)]})
    fig, ax = F.plt.subplots(figsize=(6, 6), dpi=100)
    F.draw_clusters(ax, table, fontsize=10)
    numbers = [(t.get_text(), np.array(t.get_position())) for t in ax.texts]
    F.plt.close(fig)
    assert sorted(k for k, _ in numbers) == ["1", "1", "2"]
    for piece in pieces[:2]:  # one number on a point of each large piece
        assert sum(np.min(np.hypot(*(piece - xy).T)) == 0 for k, xy in numbers if k == "1") == 1
    parts = F.fragments(points[:166, 0], points[:166, 1], 2.0)
    assert [len(p) for p in parts] == [120, 40, 6] and list(parts[1]) == list(range(120, 160))


@pytest.mark.parametrize("size", [6, 4])
def test_numbers_on_large_clusters_that_share_a_middle_do_not_cover_each_other(size):
    """Two large clusters crossing each other (a vertical and a horizontal line of points) have their middles on
    the same spot: the second number moves along its own points until it clears the first; each stays centred on
    a point of its cluster and on the map."""
    t = np.linspace(-3, 3, 121)
    zeros = np.zeros_like(t)
    table = pd.DataFrame({"x": np.r_[zeros, t], "y": np.r_[t, zeros],
                          "cluster": np.r_[np.ones(len(t), dtype=int), np.full(len(t), 2)]})
    fig, ax = F.plt.subplots(figsize=(size, size), dpi=100)
    F.draw_clusters(ax, table, fontsize=10)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t for t in ax.texts}
    assert sorted(labels) == ["1", "2"]
    boxes = {k: t.get_bbox_patch().get_window_extent(renderer) for k, t in labels.items()}
    assert not boxes["1"].overlaps(boxes["2"])
    frame = ax.get_window_extent(renderer)
    for k, text in labels.items():
        members = table.loc[table.cluster == int(k), ["x", "y"]].to_numpy()
        assert np.min(np.hypot(*(members - np.array(text.get_position())).T)) == 0  # on one of its points
        b = boxes[k]
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
    assert labels["1"].get_position() == (0.0, 0.0)  # the first keeps its middle
    F.plt.close(fig)


def test_a_centred_number_stays_on_the_map():
    """The member nearest the middle whose label, centred on it, fits inside the frame; taken boxes are avoided
    as well; with no such member, the middle one."""
    x = np.arange(11.0)
    y = np.zeros(11)
    assert F.label_anchor(x, y) == (5.0, 0.0)
    assert F.label_anchor(x, y, (2.0, 1.0), frame=(5.5, -1.0, 20.0, 1.0)) == (7.0, 0.0)  # 6 would reach 5.0
    assert F.label_anchor(x, y, (2.0, 1.0), [(3.0, -1.0, 6.5, 1.0)]) == (2.0, 0.0)  # 3-7 clash; 2 before 8
    assert F.label_anchor(x, y, (2.0, 1.0), frame=(0.0, -0.1, 20.0, 0.1)) == (5.0, 0.0)  # too tall anywhere


def _numbers(label: str) -> list[int]:
    """"2, 6\u20138" -> [2, 6, 7, 8]"""
    out = []
    for part in label.split(", "):
        first, _, last = part.partition("\u2013")
        out += list(range(int(first), int(last or first) + 1))
    return out


@pytest.mark.parametrize("size,fontsize", [(8, 10), (6, 8), (4, 8)])  # the numbered map, one panel of two; small
@pytest.mark.parametrize("spot", ["one spot", "a row at the edge", "pairs"])
def test_numbers_beside_tiny_clusters_overlap_no_label_and_stay_on_the_map(size, fontsize, spot):
    """Single linkage leaves many tiny clusters close together; their numbers go to a free corner of their
    points, and numbers with none left are written as one label ("2\u20134, 6"): every number shown once, no
    two labels overlapping, none past the map's frame (as drawn, after the figure's layout)."""
    rng = np.random.default_rng(5)
    big = rng.normal(size=(400, 2))
    if spot == "one spot":  # eleven tiny clusters on one spot: four corners cannot hold them apart
        tiny = np.array([2.6, 0.0]) + rng.normal(scale=0.02, size=(11, 2))
    elif spot == "a row at the edge":  # at the map's right edge, 0.3 apart: top right would leave the map
        tiny = np.array([[3.2 + 0.3 * i, 1.0] for i in range(4)])
    else:
        tiny = np.array([[0.0, 2.5], [0.31, 2.5], [-2.5, -2.6], [-2.3, -2.6]])
    ks = np.arange(2, 2 + len(tiny))
    table = pd.DataFrame({"x": np.r_[big[:, 0], tiny[:, 0]], "y": np.r_[big[:, 1], tiny[:, 1]],
                          "cluster": np.r_[np.ones(400, dtype=int), ks]})
    fig, ax = F.plt.subplots(figsize=(size, size), dpi=100)
    F.draw_clusters(ax, table, fontsize=fontsize)
    ax.set_title("a title")
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts}
    shown = sorted(n for text in labels for n in _numbers(text))
    assert shown == [1, *ks], labels.keys()
    boxes = list(labels.items())
    assert not [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
               for b in labels.values()), labels
    for t in ax.texts:  # a number beside its own points is tied to them by a line; numbers written together not
        own = t.get_text().isdigit() and t.get_text() != "1"
        assert (getattr(t, "arrow_patch", None) is not None) == own, t.get_text()
    if spot == "one spot":
        assert len(labels) < len(ks) + 1  # some written together
    elif size > 4:
        assert len(labels) == len(ks) + 1  # room for each on its own (on a 4-inch map the row's may share)
    F.plt.close(fig)
    assert F.number_list([9, 2, 3, 5, 6, 7, 11]) == "2, 3, 5\u20137, 9, 11"


@pytest.mark.parametrize("beside", ["points", "a circle"])
def test_a_number_beside_its_points_goes_where_it_hides_no_other_cluster(beside):
    """The first corner (top right) of a ringed cluster's points would put its number on another cluster's points
    or over another cluster's circle; it goes to a corner where it hides neither, its line still to its points."""
    rng = np.random.default_rng(7)
    spread = rng.uniform(-4, 4, size=(600, 2))  # cluster 1 around the map, clear of the tiny one's corners
    spread = spread[np.hypot(*spread.T) > 1.5]
    if beside == "points":  # a dense patch of cluster 2 at the tiny cluster's top right (its number in the middle)
        other = rng.uniform(0.05, 1.4, size=(600, 2))
    else:  # a compact clump (circled) at its top right, near enough for the circle, not its points, to be in the way
        other = np.array([0.4, 0.46]) + rng.normal(scale=0.01, size=(60, 2))
    table = pd.DataFrame({"x": np.r_[spread[:, 0], other[:, 0], 0.0], "y": np.r_[spread[:, 1], other[:, 1], 0.0],
                          "cluster": np.r_[np.ones(len(spread), dtype=int), np.full(len(other), 2), 3]})
    fig, ax = F.plt.subplots(figsize=(6, 6), dpi=100)
    F.draw_clusters(ax, table, fontsize=10)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (label,) = [t for t in ax.texts if t.get_text() == "3"]
    box = label.get_bbox_patch().get_window_extent(renderer)
    hidden = [p for p in ax.transData.transform(other) if box.contains(*p)]
    assert not hidden, f"the number of cluster 3 hides {len(hidden)} points of cluster 2"
    for circle in ax.patches:  # none on the tiny cluster's own corner here: any circle is cluster 2's
        c = ax.transData.transform(circle.center)
        r = ax.transData.transform((circle.center[0] + circle.get_radius(), circle.center[1]))[0] - c[0]
        nearest = np.clip(c, [box.x0, box.y0], [box.x1, box.y1])
        assert np.hypot(*(nearest - c)) >= r, "the number of cluster 3 lies over cluster 2's circle"
    if beside == "a circle":
        assert len(ax.patches) == 1
    corner = ax.transData.transform(label.xy)
    assert np.hypot(*(corner - ax.transData.transform((0.0, 0.0)))) < 10  # still at a corner of its point
    F.plt.close(fig)


def test_ward_vs_single_side_by_side(tables, tmp_path):
    pair = {"single": tables[(1, "h", "single")], "ward": tables[(1, "h", "ward")]}
    F.ward_vs_single_figure(pair, "layer 1 h", tmp_path / "c.png", tmp_path / "c.svg", dpi=60)
    texts = svg_texts(tmp_path / "c.svg")
    titles = [t for t in texts if "linkage" in t]
    assert titles[0].startswith("ward linkage: 8 clusters") and titles[1].startswith("single linkage: 8 clusters")
    digits = [t for t in texts if t.isdigit()]  # each panel's 8 numbers, a cluster in pieces numbered on each
    assert set(digits) == {str(k) for k in range(1, 9)} and len(digits) >= 16
    w, h = png_size(tmp_path / "c.png")
    assert w > 1.6 * h  # two panels side by side


def test_highlight_word_counts_the_word_in_every_panel(tables, tmp_path):
    embeddings = {(layer, state): tables[(layer, state, "ward")][["position", "word", "x", "y"]]
                  for layer in (1, 2) for state in ("h", "c")}
    F.highlight_word_figure(embeddings, ".", "dots", tmp_path / "h.png", tmp_path / "h.svg", dpi=60)
    n_dots = int((embeddings[(1, "h")]["word"] == ".").sum())
    assert n_dots > 5
    titles = [t for t in svg_texts(tmp_path / "h.svg") if "tokens are" in t]
    assert titles == [f"layer {layer}, {name}: {n_dots} of 500 tokens are '.'"
                      for layer in (1, 2) for name in ("hidden state h", "cell state c")]


def test_a_highlight_word_that_never_occurs_is_drawn_and_warned_of(tables, tmp_path, caplog):
    """A typo (or another case) in figures.highlight_word drew grey points only, and nothing said so."""
    embeddings = {(1, "h"): tables[(1, "h", "ward")][["position", "word", "x", "y"]]}
    with caplog.at_level("WARNING", logger="lstmscope.cluster_figures"):
        F.highlight_word_figure(embeddings, ".", "dots", tmp_path / "h.png", tmp_path / "h.svg", dpi=40)
        assert caplog.records == []
        F.highlight_word_figure(embeddings, "Teh", "typo", tmp_path / "t.png", tmp_path / "t.svg", dpi=40)
    assert [r.getMessage() for r in caplog.records] == [
        "figures.highlight_word 'Teh' is none of the 500 tokens embedded (a word is matched as it is, case included): "
        "the figure highlights nothing"]
    assert (tmp_path / "t.png").stat().st_size > 0


def test_position_figure_quotes_the_longest_spans(tables, tmp_path):
    table = tables[(2, "c", "single")]
    clusters = cluster_table(table)
    F.position_figure(table, clusters, "along the text", 3, tmp_path / "p.png", tmp_path / "p.svg", dpi=60,
                      passage="active")  # any tokens: the spans of Table 5.1
    text = " ".join(svg_texts(tmp_path / "p.svg"))
    # each cluster's longest run of consecutive tokens, counted here; the three longest are quoted, longest first
    longest: dict[int, tuple[int, int]] = {}
    ordered = table.sort_values("position")
    for cluster, run in itertools.groupby(zip(ordered["cluster"], ordered["position"]), key=lambda cp: cp[0]):
        run = [p for _, p in run]
        if len(run) > longest.get(cluster, (0, 0))[0]:
            longest[cluster] = (len(run), run[0])
    best = sorted(longest.items(), key=lambda kv: (-kv[1][0], kv[0]))[:3]
    quoted = [text.index(f"\u25bc cluster {k} (") for k, _ in best]
    assert quoted == sorted(quoted)
    for k, (length, start) in best:
        assert f"longest span {F.tokens(length)} from position {start}" in text
    assert [k for k, _ in best] != [1, 2, 3], best  # here not the three largest clusters
    assert "position in the text (tokens)" in text


def longest_outside(table: pd.DataFrame, avoid: np.ndarray) -> dict[int, tuple[int, int]]:
    """Each cluster's first longest run of consecutive tokens holding no avoided token: (length, start)."""
    longest: dict[int, tuple[int, int]] = {}
    ordered = table.sort_values("position")
    marks = zip(ordered["cluster"], ordered["position"], avoid)
    for (cluster, avoided), run in itertools.groupby(marks, key=lambda cpa: (cpa[0], cpa[2])):
        run = [p for _, p, _ in run]
        if not avoided and len(run) > longest.get(cluster, (0, 0))[0]:
            longest[cluster] = (len(run), run[0])
    return longest


@pytest.mark.parametrize("view", [(1, "h", "ward"), (2, "c", "single")])
def test_position_figure_quotes_no_span_of_section_headings_with_passage_prose(tables, tmp_path, view):
    """The longest one-cluster spans were WikiText's layout ("<eos> <eos> = = Filmography = = ..."); with
    heatmap.passage prose a quoted span holds no token a prose passage of the heatmaps avoids (counted here line by
    line: neurons_support.prose_avoid), and the figure says so."""
    from neurons_support import prose_avoid

    table = tables[view]
    words = table.sort_values("position")["word"].astype(str).tolist()
    avoid = prose_avoid(words)
    assert avoid.any() and not avoid.all()  # the test split opens with " = Robert Boulter = "
    everywhere = longest_outside(table, np.zeros(len(words), bool))
    outside = longest_outside(table, avoid)
    best = sorted(outside.items(), key=lambda kv: (-kv[1][0], kv[0]))[:3]
    anywhere = sorted(everywhere.items(), key=lambda kv: (-kv[1][0], kv[0]))[:3]
    assert anywhere != best  # a span of the headings would be quoted (8 tokens from 337): the test tells them apart
    F.position_figure(table, cluster_table(table), "t", 3, tmp_path / "p.png", tmp_path / "p.svg", dpi=60,
                      passage="prose")
    text = " ".join(svg_texts(tmp_path / "p.svg"))
    quoted = [text.index(f"\u25bc cluster {k} (") for k, _ in best]
    assert quoted == sorted(quoted) and text.count("\u25bc cluster") == 3
    for k, (length, start) in best:
        assert f"longest span {F.tokens(length)} from position {start}: \u201c{' '.join(words[start:start + min(length, 3)])}" \
            in text
    assert " = = " not in text.split("heatmap.passage")[1]  # no heading quoted
    assert "Spans leave out the section headings, the blank lines around them and the 20 tokens after each " \
           "(shaded grey; heatmap.passage: prose)." in text


def test_position_figure_says_so_where_no_span_lies_outside_the_headings(tmp_path):
    words = "= = Early life = = <eos> <eos> The".split()  # the last token is within 20 of the heading
    n = len(words)
    table = pd.DataFrame({"position": np.arange(n), "word": words, "x": np.arange(n, dtype=float),
                          "y": np.zeros(n), "cluster": [1, 1, 2, 2, 1, 1, 1, 2, 1]})
    F.position_figure(table, cluster_table(table), "t", 3, tmp_path / "p.png", tmp_path / "p.svg", dpi=40)
    text = " ".join(svg_texts(tmp_path / "p.svg"))
    assert "No span of one cluster lies outside them." in text and "\u25bc cluster" not in text
    F.position_figure(table, cluster_table(table), "t", 3, tmp_path / "p.png", tmp_path / "p.svg", dpi=40,
                      passage="active")
    text = " ".join(svg_texts(tmp_path / "p.svg"))
    assert "\u25bc cluster 1 " in text and "heatmap.passage" not in text
    with pytest.raises(ValueError, match="heatmap.passage='all'"):
        F.position_figure(table, cluster_table(table), "t", 3, tmp_path / "p.png", tmp_path / "p.svg", passage="all")


@pytest.mark.parametrize("passage", ["prose", "active"])
def test_the_position_caption_follows_heatmap_passage(passage):
    from types import SimpleNamespace

    import jinja2

    from conftest import REPO
    from lstmscope.wikitext import HEADING_SETTLE

    job = SimpleNamespace(wildcards=SimpleNamespace(model="d0.0_r0", text="test", layer=1, state="h", linkage="ward"),
                          params=SimpleNamespace(spans=3, passage=passage), config={"cluster": {"space": "map"}})
    text = " ".join(jinja2.Template((REPO / "workflow" / "report" / "cluster_position.rst").read_text())
                    .render(snakemake=job).split())
    assert f"heatmap.passage: {passage}" in text
    assert (f"of the {HEADING_SETTLE} tokens after it" in text) == (passage == "prose")


@pytest.mark.parametrize("passage", ["prose", "active"])
def test_the_cluster_figures_job_draws_with_its_passage_param(tmp_path, passage):
    """The job's script, run as Snakemake runs it (its ``snakemake`` object), hands heatmap.passage (the rule's
    param; test_rerun checks that changing it reruns the job) to Fig. 5.12: with prose its spans leave out the
    headings and say so."""
    from conftest import run_rule_script

    files = {f"{kind}_{ext}": str(tmp_path / f"{kind}.{ext}") for kind in ("numbered", "position")
             for ext in ("png", "svg")}
    run_rule_script("cluster_figures", "cluster_figures", tmp_path / "job.log",
                    {"table": str(real_cluster_tables()[(2, "c", "ward")])}, files,
                    {"title": "t", "spans": 3, "passage": passage, "dpi": 40})
    text = " ".join(svg_texts(files["position_svg"]))
    assert ("(shaded grey; heatmap.passage: prose)" in text) == (passage == "prose"), text[-600:]
    assert "\u25bc cluster " in text  # the spans quoted


@pytest.mark.parametrize("clusters", [None, 90])
def test_the_span_markers_stay_inside_the_frame_cluster_1s_too(tables, tmp_path, monkeypatch, clusters):
    """A span of cluster 1 (the top row) is marked above its row: the marker sat on the frame's top edge, and with
    many clusters (rows a few points high) it would again."""
    table = tables[(2, "c", "single")].copy()
    if clusters:  # the real tokens dealt round-robin into many clusters
        table["cluster"] = table["position"].rank(method="first").astype(int) % clusters + 1
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.position_figure(table, cluster_table(table), "t", 12, tmp_path / "p.png", tmp_path / "p.svg", dpi=60)
    fig = kept[0]
    fig.canvas.draw()
    ax = fig.axes[0]
    frame = ax.get_window_extent()
    markers = [c for c in ax.collections if c.get_offsets().shape[0] == 1]  # one marker each, the rows are many
    assert 1 in {round(float(c.get_offsets()[0][1])) for c in markers}, "no span of cluster 1 marked"
    for c in markers:
        x, y = c.get_offset_transform().transform(c.get_offsets()[0])
        row = ax.transData.transform(c.get_offsets()[0])[1]
        assert y > row  # above its own row
        half = np.sqrt(c.get_sizes()[0]) / 2 * fig.dpi / 72  # the marker's half height, in pixels
        assert frame.y0 < y - half and y + half < frame.y1, c.get_offsets()[0]


def test_words_with_dollar_signs_are_drawn_as_they_are(tmp_path):
    # two "$" would make matplotlib read the text between them as a formula ("%" there: a parse error)
    words = "the the , rose , $ 3 million , 5 % above $ 2 the".split()  # cluster 1's top word: ","
    n = len(words)
    table = pd.DataFrame({"position": np.arange(n), "word": words, "x": np.arange(n, dtype=float),
                          "y": np.zeros(n), "cluster": [2, 2] + [1] * (n - 3) + [2]})
    F.position_figure(table, cluster_table(table), "t", 2, tmp_path / "p.png", tmp_path / "p.svg", dpi=40)
    assert "\u201c, rose , $ 3 million , 5 % above $ 2\u201d" in " ".join(svg_texts(tmp_path / "p.svg"))
    F.highlight_word_figure({(1, "h"): table}, "$x$", "t", tmp_path / "h.png", tmp_path / "h.svg", dpi=40)
    assert f"layer 1, hidden state h: 0 of {n} tokens are '$x$'" in svg_texts(tmp_path / "h.svg")


def test_contiguity_figure_has_one_panel_per_linkage_and_baseline(tables, tmp_path, monkeypatch):
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    _, other = cluster_measures(paths, "d0.8_r0", "test", shuffles=5)
    both = pd.concat([measures, other], ignore_index=True)
    F.contiguity_figure(both, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    texts = svg_texts(tmp_path / "k.svg")
    for linkage in ("single", "ward"):
        assert texts.count(f"test: {linkage} linkage") == 2  # the titles name the baseline on a second line
    assert texts.count("baseline: labels shuffled") == 2
    assert texts.count("baseline: each word's labels shuffled among its tokens") == 2
    assert texts.count("d0.0_r0") == 4 and texts.count("d0.8_r0") == 4
    assert [t for t in texts if re.fullmatch(r"L\d [hc]", t)][:4] == ["L1 h", "L1 c", "L2 h", "L2 c"]
    # a bar within 1.96 standard deviations of its baseline is hollow: one of each row, set by hand
    both["contiguity_z"] = 5.0
    both["word_contiguity_z"] = 5.0
    both.loc[0, "contiguity_z"] = 0.5
    both.loc[1, "word_contiguity_z"] = -1.0
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(both, tmp_path / "z.png", tmp_path / "z.svg", dpi=60)
    axes = np.array(kept[0].axes).reshape(2, -1)
    baselines = [("contiguity_ratio", "contiguity_z"), ("word_contiguity_ratio", "word_contiguity_z")]
    for row, (ratio, z) in zip(axes, baselines):
        bars = [p for ax in row for p in ax.patches]
        assert len(bars) == len(both)
        assert sorted(b.get_y() + b.get_height() for b in bars) == pytest.approx(sorted(both[ratio]))
        assert all(b.get_y() == 1 for b in bars)  # each grows from chance, up or down
        (hollow,) = [b for b in bars if np.allclose(b.get_facecolor()[:3], 1)]
        assert hollow.get_y() + hollow.get_height() == pytest.approx(both.loc[(both[z].abs() < 1.96).idxmax(), ratio])
    # a model whose bars are all hollow: one legend entry per model all the same
    both.loc[both.model == "d0.8_r0", ["contiguity_z", "word_contiguity_z"]] = 0.5
    F.contiguity_figure(both, tmp_path / "z.png", tmp_path / "z.svg", dpi=60)
    for ax in kept[-1].axes:
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["d0.0_r0", "d0.8_r0"]


def test_a_linkages_panels_against_both_baselines_share_one_scale(tmp_path, monkeypatch):
    """The two rows compare one clustering against two baselines: a bar's height must mean the same ratio in both,
    though each word's own shuffles leave smaller ratios (here a quarter of the distance from 1)."""
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    measures["word_contiguity_ratio"] = 1 + (measures["contiguity_ratio"] - 1) / 4
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(measures, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    kept[0].canvas.draw()
    axes = np.array(kept[0].axes).reshape(2, -1)
    for top, bottom in axes.T:
        assert top.get_ylim() == bottom.get_ylim(), top.get_title()
        lo, hi = top.get_ylim()
        tops = [b.get_y() + b.get_height() for ax in (top, bottom) for b in ax.patches]
        assert lo < min(tops) and max(tops) < hi
        assert all(t.get_visible() and t.get_text() for t in bottom.get_yticklabels()[1:-1])  # each panel its numbers


def test_the_chance_line_stays_inside_a_panel_whose_bars_all_rise_above_it(tmp_path, monkeypatch):
    """Every view more contiguous than its baseline: the bars start at 1 and the axis started there too, so the dashed
    chance line lay on the frame; a margin keeps it inside."""
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    for ratio in ("contiguity_ratio", "word_contiguity_ratio"):
        measures[ratio] = 1.01 + (measures[ratio] - 1).abs()
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(measures, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    kept[0].canvas.draw()
    for ax in kept[0].axes:
        lo, hi = ax.get_ylim()
        assert lo < 1 - 0.02 * (hi - lo) and hi > measures["contiguity_ratio"].min(), (ax.get_title(), lo, hi)


def test_contiguity_bars_too_short_to_see_end_in_a_dot_hollow_or_filled_as_the_bar(tmp_path, monkeypatch):
    """A bar on the chance line (ratio 1.0005) is a sliver whose fill cannot be seen: it ends in a dot, white inside
    when the bar is hollow (within the baseline's range), the bar's colour when filled; the tall bars get none."""
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    _, other = cluster_measures(paths, "d0.8_r0", "test", shuffles=5)
    both = pd.concat([measures, other], ignore_index=True)
    both["contiguity_ratio"] = 1.2
    both["contiguity_z"] = 5.0
    hollow = (both.model == "d0.0_r0") & (both.layer == 2) & (both.state == "h") & (both.linkage == "ward")
    filled = (both.model == "d0.8_r0") & (both.layer == 1) & (both.state == "c") & (both.linkage == "ward")
    both.loc[hollow, ["contiguity_ratio", "contiguity_z"]] = (1.0005, 0.3)
    both.loc[filled, ["contiguity_ratio", "contiguity_z"]] = (0.9995, -4.0)
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(both, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    first_row = np.array(kept[0].axes).reshape(2, -1)[0]
    dots = {ax.get_title().split("\n")[0]: [(float(line.get_xdata()[0]), float(line.get_ydata()[0]),
                                             line.get_markerfacecolor()) for line in ax.lines if line.get_marker() == "o"]
            for ax in first_row}
    assert dots["test: single linkage"] == [], "a dot on a bar tall enough to see"
    (a, b) = sorted(dots["test: ward linkage"], key=lambda d: d[1])
    assert b[1] == pytest.approx(1.0005) and F.plt.matplotlib.colors.to_hex(b[2]) == "#ffffff"  # the hollow bar's
    assert a[1] == pytest.approx(0.9995) and F.plt.matplotlib.colors.to_hex(a[2]) != "#ffffff"  # the filled bar's
    ward = first_row[[ax.get_title().startswith("test: ward") for ax in first_row].index(True)]
    filled_bar = [p for p in ward.patches if p.get_height() == pytest.approx(-0.0005)]
    assert len(filled_bar) == 1 and np.allclose(filled_bar[0].get_facecolor(), F.plt.matplotlib.colors.to_rgba(a[2]))
    assert filled_bar[0].get_x() < a[0] < filled_bar[0].get_x() + filled_bar[0].get_width()  # at the bar's end
    F.plt.close(kept[0])


def test_contiguity_bars_follow_the_tables_model_order_not_the_names_spelling(tmp_path, monkeypatch):
    """The workflow lists models by dropout, then replicate; the figure keeps that order, where sorting the names as
    text would put d0.05_r0 before d0.0_r0 (and d0.0_r10 before d0.0_r2)."""
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    names = ["d0.0_r0", "d0.0_r2", "d0.0_r10", "d0.05_r0"]
    table = pd.concat([measures.assign(model=name) for name in names], ignore_index=True)
    table[["contiguity_z", "word_contiguity_z"]] = 5.0  # every bar filled in its model's colour
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(table, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    for ax in kept[0].axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == names
        bars = sorted((p for p in ax.patches), key=lambda p: p.get_x())[:len(names)]  # the first view, left to right
        colours = [tuple(np.round(p.get_facecolor(), 3)) for p in bars]
        first = {tuple(np.round(h.get_facecolor(), 3)): t.get_text()
                 for h, t in zip(ax.get_legend().legend_handles, ax.get_legend().get_texts())}
        assert [first.get(c) for c in colours] == names
    F.plt.close(kept[0])


def test_contiguity_panels_titles_do_not_overlap_and_a_single_cluster_is_named(tmp_path, monkeypatch):
    """In the PCA space (the longest titles) with two models, the panels' titles stay apart; a view that is one
    cluster, whose bar has height 0 (its run and the baseline's are the whole text), says so."""
    paths = real_cluster_tables()
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    _, other = cluster_measures(paths, "d0.8_r0", "test", shuffles=5)
    both = pd.concat([measures, other], ignore_index=True)
    both["space"] = "pca"
    one = (both.model == "d0.8_r0") & (both.layer == 2) & (both.state == "h") & (both.linkage == "single")
    both.loc[one, ["clusters", "contiguity_ratio", "word_contiguity_ratio"]] = (1, 1.0, 1.0)
    both.loc[one, ["contiguity_z", "word_contiguity_z"]] = np.nan
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(both, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    fig = kept[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = np.array(fig.axes).reshape(2, -1)
    for row in axes:
        boxes = sorted((ax.title.get_window_extent(renderer) for ax in row), key=lambda b: b.x0)
        assert "PCA space" in row[0].get_title()
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]
    for row in axes:
        named = [(ax.get_title(), t.get_text()) for ax in row for t in ax.texts if "cluster" in t.get_text()]
        assert [n for _, n in named] == [" 1 cluster"] and "single linkage" in named[0][0], named  # that panel, once


def test_every_figure_is_also_valid_svg_with_its_points_rasterized(tmp_path, tables):
    """Every cluster figure's SVG parses, and those with a point per token carry them as an embedded image (small
    files at 18 000 points), not as one SVG element per point."""
    table = tables[(1, "c", "single")]
    embeddings = {(layer, state): tables[(layer, state, "ward")][["position", "word", "x", "y"]]
                  for layer in (1, 2) for state in ("h", "c")}
    _, measures = cluster_measures(real_cluster_tables(), "d0.0_r0", "test", shuffles=5)
    figures = {
        "numbered": lambda png, svg: F.numbered_clusters_figure(table, "t", png, svg, dpi=40),
        "ward_vs_single": lambda png, svg: F.ward_vs_single_figure(
            {"single": table, "ward": tables[(1, "c", "ward")]}, "t", png, svg, dpi=40),
        "highlight": lambda png, svg: F.highlight_word_figure(embeddings, ".", "t", png, svg, dpi=40),
        "position": lambda png, svg: F.position_figure(table, cluster_table(table), "t", 3, png, svg, dpi=40),
        "contiguity": lambda png, svg: F.contiguity_figure(measures, png, svg, dpi=40),
    }
    for name, draw in figures.items():
        svg = tmp_path / f"{name}.svg"
        draw(tmp_path / f"{name}.png", svg)
        root = ET.parse(svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        images = list(root.iter("{http://www.w3.org/2000/svg}image"))
        assert bool(images) == (name != "contiguity"), name  # the contiguity figure draws a few bars, no points


def test_cluster_colours_are_distinct_and_none_looks_like_the_grey_of_the_rest():
    """Neighbouring cluster numbers used to get a dark and a light shade of one hue (tab20's pairs), and cluster
    15 tab20's grey, next to the grey of the clusters beyond the palette."""
    from matplotlib.colors import rgb_to_hsv

    rgb = F.cluster_colours(np.arange(1, F.COLOURED + 2))[:, :3]
    colours, other = rgb[:-1], rgb[-1]
    assert np.allclose(other, 0xB0 / 255) and F.cluster_colours(np.array([F.COLOURED + 5, 0]))[:, :3] == pytest.approx(
        np.tile(other, (2, 1)))
    hsv = rgb_to_hsv(colours)
    assert hsv[:, 1].min() > 0.15  # no grey among them
    distance = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    assert distance[np.triu_indices(len(colours), 1)].min() > 0.25
    assert np.linalg.norm(colours - other, axis=1).min() > 0.25
    hue_step = np.abs(np.diff(hsv[:, 0]))
    assert np.minimum(hue_step, 1 - hue_step).min() > 0.04  # clusters k and k + 1: different hues


def test_span_captions_quote_the_most_frequent_word():
    """Table 5.1's 'word (count)' is ambiguous for punctuation (', (197)'); the caption quotes the word."""
    assert F._top_word("was (39) · the (30)") == "most frequent word \u201cwas\u201d, 39\u00d7"
    assert F._top_word(", (197) · the (3)") == "most frequent word \u201c,\u201d, 197\u00d7"
    assert F._top_word("( (16)") == "most frequent word \u201c(\u201d, 16\u00d7"
    assert F._top_word("(2) (4)") == "most frequent word \u201c(2)\u201d, 4\u00d7"


def test_contiguity_by_lag_figure_draws_every_model_and_view_once(tmp_path, monkeypatch):
    """One panel per view (columns, the thesis's order) and text x linkage (rows); each model's clusters as a solid
    line through its kappa at every lag and each word's shuffles as a dashed one; a view of one cluster (no chance
    to beat) draws no line for that model."""
    from lstmscope.cluster_measures import lag_measures

    paths = real_cluster_tables()
    lags = pd.concat([lag_measures(paths, model, "test", max_lag=30, shuffles=5) for model in ("d0.0_r0", "d0.8_r0")],
                     ignore_index=True)
    one = (lags.model == "d0.8_r0") & (lags.layer == 2) & (lags.state == "c") & (lags.linkage == "ward")
    lags.loc[one, ["same", "chance", "word_same", "word_same_sd"]] = (1.0, 1.0, 1.0, 0.0)
    lags.loc[one, ["kappa", "word_kappa", "word_z"]] = np.nan
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_lag_figure(lags, tmp_path / "l.png", tmp_path / "l.svg", dpi=60)
    axes = np.array(kept[0].axes).reshape(2, 4)
    titles = [[ax.get_title() for ax in row] for row in axes]
    views = ((1, "h"), (1, "c"), (2, "h"), (2, "c"))
    assert titles == [[f"test, {linkage}: L{layer} {state}" for layer, state in views]
                      for linkage in ("single", "ward")]
    for row, linkage in zip(axes, ("single", "ward")):
        for ax in row:
            layer, state = int(ax.get_title()[-3]), ax.get_title()[-1]
            solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
            dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
            one = (linkage, layer, state) == ("ward", 2, "c")
            drawn = ["d0.0_r0"] if one else ["d0.0_r0", "d0.8_r0"]
            assert [ln.get_label() for ln in solid] == drawn and len(dashed) == len(drawn)
            assert [t.get_text() for t in ax.texts] == (["1 cluster, no line: d0.8_r0"] if one else [])
            for ln, model in zip(solid, drawn):
                view = lags[(lags.model == model) & (lags.linkage == linkage) & (lags.layer == layer)
                            & (lags.state == state)]
                assert ln.get_xdata().tolist() == list(range(1, 31))
                assert np.allclose(ln.get_ydata(), view["kappa"]) and ax.get_xscale() == "log"
            for ln, band, model in zip(dashed, ax.collections, drawn):  # each word baseline in its band of 1.96 sd
                view = lags[(lags.model == model) & (lags.linkage == linkage) & (lags.layer == layer)
                            & (lags.state == state)]
                assert np.allclose(ln.get_ydata(), view["word_kappa"])
                half = 1.96 * view["word_same_sd"] / (1 - view["chance"])
                y = band.get_paths()[0].vertices[:, 1]
                assert y.max() == pytest.approx((view["word_kappa"] + half).max())
                assert y.min() == pytest.approx((view["word_kappa"] - half).min())
    assert [ax.get_xlabel() for ax in axes.flat] == [""] * 4 + ["tokens apart (lag)"] * 4  # under the last row
    assert [axes[1, 0].xaxis.get_major_formatter()(v, 0) for v in (1, 10, 100)] == ["1", "10", "100"]
    legend = [t.get_text() for t in axes[0, -1].get_legend().get_texts()]
    assert legend == ["d0.0_r0", "d0.8_r0", "clusters", "each word's labels shuffled (± 1.96 sd)"]
    monkeypatch.undo()
    F.contiguity_lag_figure(lags, tmp_path / "l.png", tmp_path / "l.svg", dpi=60)
    assert png_size(tmp_path / "l.png")[0] > 0 and "ward: L2 c" in " ".join(svg_texts(tmp_path / "l.svg"))


def test_a_model_has_one_colour_in_the_contiguity_and_the_lag_figure_a_panel_lacking_a_model_too(tmp_path,
                                                                                                   monkeypatch):
    """The contiguity bars and the lines by lag are read together (the bar against lag 1): each model the same colour
    in both, also in a panel whose text lacks one of the models (the colours follow the whole table's models)."""
    from lstmscope.cluster_measures import lag_measures

    paths = real_cluster_tables()
    names = ["d0.0_r0", "d0.4_r0", "d0.8_r0"]
    _, measures = cluster_measures(paths, "d0.0_r0", "test", shuffles=5)
    table = pd.concat([measures.assign(model=name) for name in names]
                      + [measures.assign(model=name, text="train") for name in names[::2]], ignore_index=True)
    table[["contiguity_z", "word_contiguity_z"]] = 5.0  # every bar filled in its model's colour
    lags = pd.concat([lag_measures(paths, "d0.0_r0", "test", max_lag=5, shuffles=5).assign(model=name)
                      for name in names], ignore_index=True)
    kept = []
    monkeypatch.setattr(F, "save_figure", lambda fig, *a, **k: kept.append(fig))
    F.contiguity_figure(table, tmp_path / "k.png", tmp_path / "k.svg", dpi=60)
    F.contiguity_lag_figure(lags, tmp_path / "l.png", tmp_path / "l.svg", dpi=60)
    lines = {ln.get_label(): tuple(np.round(ln.get_color(), 3)) for ln in kept[1].axes[0].get_lines()
             if ln.get_linestyle() == "-"}
    assert sorted(lines) == sorted(names) and len(set(lines.values())) == 3
    legends = []
    for ax in kept[0].axes:
        legend = {t.get_text(): tuple(np.round(h.get_facecolor(), 3))
                  for h, t in zip(ax.get_legend().legend_handles, ax.get_legend().get_texts())}
        assert legend == {name: lines[name] for name in legend}, ax.get_title()
        legends.append(set(legend))
    assert {"d0.0_r0", "d0.8_r0"} in legends and set(names) in legends  # the train panels lack d0.4_r0
    for fig in kept:
        F.plt.close(fig)


def test_a_span_cut_short_keeps_its_ellipsis_on_the_line_of_its_last_word():
    """Fig. 5.12 quotes spans cut to a number of words with " …"; wrapped at 160 characters, a line could end at the
    last word and leave "…”" alone on the next. The ellipsis is bound to its word; a span not cut is untouched."""
    from lstmscope import cluster_figures as cf

    span = " ".join(["word"] * 31) + " is …"  # with the opening quote 158 characters to "is", then " …”"
    assert cf._wrap(f"\u201c{span}\u201d", 160).splitlines()[-1] == "…\u201d"  # as it was: the ellipsis alone
    lines = cf._wrap(f"\u201c{cf._unbroken_ellipsis(span)}\u201d", 160).splitlines()
    assert lines[-1] == "is\u00a0…\u201d", lines  # the last word goes with it
    assert cf._unbroken_ellipsis("a whole span") == "a whole span"

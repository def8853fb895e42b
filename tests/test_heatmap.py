"""Text heatmaps: paragraph layout, passage choice, literal tokens, files for every layer and state."""
from __future__ import annotations

import re

import h5py
import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from lstmscope.activations_file import ActivationsError
from lstmscope.figures import plt
from lstmscope.heatmap import (TextBlock, activation_norm, best_window, draw_blocks, expectancy_block, expectancy_heatmap,
                               expectancy_norm, layout_words, line_texts, neuron_blocks, symmetric_norm)
from lstmscope.neuron_heatmaps import text_heatmaps
from lstmscope.wikitext import heading_tokens

from neurons_support import HIDDEN, LAYERS, degenerate, divergence_csv, prose_avoid, tiny  # noqa: F401  (fixtures)


def test_layout_wraps_like_a_paragraph():
    words = ["The", "tower", "<unk>", "is", "a", "supercalifragilistic", "x", "@-@", "y"]
    lay = layout_words(words, 12)
    assert lay[:3] == [(0, 0), (0, 4), (1, 0)]  # "The tower" fits 12, "<unk>" wraps
    for (line, col), w in zip(lay, words):
        assert col + len(w) <= 12 or col == 0  # only an over-long word exceeds the line, alone
    assert [line for line, _ in lay] == sorted(line for line, _ in lay)
    texts = line_texts(words, lay)
    assert " ".join(" ".join(t.split()) for t in texts) == " ".join(words)
    for w, (line, col) in zip(words, lay):
        assert texts[line][col:col + len(w)] == w  # each word sits on its box


def test_best_window_is_the_largest_absolute_sum():
    rng = np.random.default_rng(0)
    v = rng.normal(size=200)
    v[120:130] = -5.0
    start = best_window(v, 25)
    sums = [np.abs(v[s:s + 25]).sum() for s in range(len(v) - 24)]
    assert start == int(np.argmax(sums)) and start <= 120 <= start + 24 - 9
    assert best_window(v[:10], 25) == 0


def test_best_window_with_a_mask_avoids_its_tokens_where_any_window_can():
    v = np.zeros(100)
    v[40:50], v[80:90] = 5.0, -1.0  # the largest values lie in the avoided run
    avoid = np.zeros(100, dtype=bool)
    avoid[40:50] = True
    assert 30 <= best_window(v, 20) <= 40  # unmasked: over the run
    start = best_window(v, 20, avoid)
    assert not avoid[start:start + 20].any() and start == 70  # the largest sum of the clean windows, first on ties
    # every 40-token window holds an avoided token: the ones holding the fewest, and of those the largest sum
    avoid = np.zeros(100, dtype=bool)
    avoid[::30] = True
    counts = [int(avoid[s:s + 40].sum()) for s in range(61)]
    sums = [np.abs(v[s:s + 40]).sum() if counts[s] == min(counts) else -1 for s in range(61)]
    assert min(counts) == 1 and best_window(v, 40, avoid) == int(np.argmax(sums))


def test_heading_tokens_are_the_section_heading_lines_of_wikitext(tiny):
    """Derived from the split file's lines: a heading line reads "= Title =", "= = Section = =", ..."""
    words, want = [], []
    for line in tiny.split.read_text(encoding="utf-8").splitlines()[:400]:
        tokens = line.split() + ["<eos>"]  # the pipeline's tokenisation
        words += tokens
        stripped = line.strip()
        want += [stripped.startswith("= ") and stripped.endswith(" =")] * len(tokens)
    got = heading_tokens(words)
    assert got.tolist() == want and 10 < got.sum() < len(words) / 4
    mask = heading_tokens(["The", "=", "sign", "<eos>", "=", "A", "=", "<eos>", "B", "<eos>"])
    assert mask.tolist() == [False] * 4 + [True] * 4 + [False] * 2
    # a text that starts inside a heading line (an offset): its rest is a heading too
    assert heading_tokens(words[3:]).tolist() == want[3:] and want[2] and want[3]
    # a line cut off by the text's end is a heading if it starts with "="; one that starts with "=" and ends
    # otherwise is prose (the test split's "= National record", below)
    first = next(i for i in range(1, len(words)) if want[i] and words[i - 1] == "<eos>")
    assert heading_tokens(words[:first + 2]).tolist() == want[:first] + [True, True]
    assert heading_tokens(["=", "National", "record", "<eos>", "=", "A", "=", "<eos>"]).tolist() == [False] * 4 + [
        True] * 4


def test_heading_tokens_of_the_whole_test_split(wikitext2):
    """Every line of WikiText-2's test split, against the lines' own text: a heading starts and ends with "="
    (the split holds two prose lines that start with "=" and two that end with it)."""
    words, want = [], []
    for line in (wikitext2 / "test.txt").read_text(encoding="utf-8").splitlines():
        tokens = line.split() + ["<eos>"]
        words += tokens
        stripped = line.strip()
        want += [stripped.startswith("= ") and stripped.endswith(" =")] * len(tokens)
    starts_only = [line for line in (wikitext2 / "test.txt").read_text(encoding="utf-8").splitlines()
                   if line.strip().startswith("= ") and not line.strip().endswith(" =")]
    assert len(starts_only) == 2
    assert heading_tokens(words).tolist() == want


def test_neuron_heatmaps_show_prose_unless_asked_for_any_passage(tiny, divergence_csv, tmp_path, monkeypatch):
    """The tiny text holds two heading lines, and several of layer 2's neurons are most active over one of them
    or just after it: each neuron's prose passage holds none of those tokens and is, among such passages, the one
    where its h is most active; ``active`` takes the most active passage anywhere."""
    import lstmscope.neuron_heatmaps as hm

    drawn = []
    monkeypatch.setattr(hm, "draw_blocks", lambda blocks, *a, **k: drawn.append(blocks))
    outputs = {(2, "h"): (tmp_path / "a.png", tmp_path / "a.svg")}
    with h5py.File(tiny.activations) as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        h = f["layer2/h"][:].astype(np.float64)
    heads, w = prose_avoid(words), 40
    clean = np.array([not heads[s:s + w].any() for s in range(len(words) - w + 1)])
    starts = {}
    for passage in ("prose", "active"):
        drawn.clear()
        text_heatmaps(tiny.activations, divergence_csv, outputs, neurons=HIDDEN, passage_tokens=w, passage=passage)
        (blocks,) = drawn
        for block in blocks[::2]:  # the h block of each neuron
            neuron = int(re.search(r"neuron (\d+)", block.title).group(1))
            start = int(re.search(r"tokens (\d+)-", block.title).group(1))
            sums = np.array([np.abs(h[s:s + w, neuron]).sum() for s in range(len(words) - w + 1)])
            want = np.argmax(np.where(clean, sums, -1)) if passage == "prose" else np.argmax(sums)
            assert start == want, (passage, neuron)
            starts[passage, neuron] = start
    moved = [j for (p, j), s in starts.items() if p == "prose" and s != starts["active", j]]
    assert moved and all(heads[starts["active", j]:starts["active", j] + w].any() for j in moved)
    with pytest.raises(ValueError, match="heatmap.passage='most'"):
        text_heatmaps(tiny.activations, divergence_csv, outputs, neurons=3, passage_tokens=30, passage="most")


def test_a_prose_passage_leaves_out_headings_their_empty_lines_and_what_follows():
    """A heading line, the lines holding only <eos> next to it (not the <eos> that ends a paragraph), and the
    HEADING_SETTLE tokens after them, where the state still carries the heading."""
    from lstmscope.wikitext import HEADING_SETTLE, passage_avoid

    assert HEADING_SETTLE == 20
    words = "a b <eos> <eos> = = H = = <eos> <eos>".split() + [f"w{i}" for i in range(25)]
    want = [0, 0, 0] + [1] * 8 + [1] * 20 + [0] * 5  # 3 = the empty line before; 9, 10 = the heading's and after
    assert passage_avoid(words, "prose").astype(int).tolist() == want
    assert passage_avoid(words, "active") is None
    words = "<eos> = T = <eos> x".split()  # the text's first line is empty
    assert passage_avoid(words, "prose").all()


def test_literal_tokens_and_colour_scale_in_the_svg(tmp_path):
    words = ["<unk>", "costs", "$", "5", "@,@", "000", "<eos>", "a_b", "50%"]
    values = np.linspace(-2, 3, len(words))
    block = TextBlock("literal tokens", words, values, symmetric_norm(values), "h")
    title = r"probe $\frac{1$ of mine"  # a name of one's own in the title: as mathtext, an error when drawn
    with plt.rc_context({"svg.fonttype": "none"}):  # keep text as text to read it back
        draw_blocks([block], tmp_path / "t.png", tmp_path / "t.svg", dpi=60, max_chars=20, suptitle=title)
    svg = (tmp_path / "t.svg").read_text()
    for token in ("&lt;unk&gt;", "&lt;eos&gt;", "$", "@,@", "a_b", "50%", r"probe $\frac{1$ of mine"):
        assert token in svg
    assert symmetric_norm(values).vmin == -3 and symmetric_norm(values).vmax == 3
    # the colour bar drawn: centred on 0, so it reaches below the lowest value (-2) as far as above the highest (3)
    ticks = [float(t.replace("\u2212", "-")) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)
             if re.fullmatch(r"\u2212?\d+(\.\d+)?", t)]
    assert len(ticks) >= 3 and sorted(ticks) == sorted(-t for t in ticks) and min(ticks) < -2, ticks
    img = mpimg.imread(tmp_path / "t.png")
    assert img.shape[0] > 30 and img.shape[1] > 100


def test_long_titles_wrap_within_the_width_the_text_sets(tmp_path):
    """A title longer than the text's width is broken into lines: it never widens the figure (which would leave
    the colour bar in its middle, the right of the figure blank)."""
    words = "the film was released in 2004 and earned a profit".split()
    values = np.linspace(-1, 1, len(words))
    sizes = {}
    for name, title in (("short", "d0.0_r0, text test"),
                        ("long", "d0.0_r0, text train, tokens 0-149: expectancy p(word | preceding words); perplexity "
                                 "of these words 673; dotted frame = no context (first token) (10 characters the "
                                 "font lacks drawn as \ufffd)")):
        block = TextBlock(title, words, values, symmetric_norm(values), "h")
        draw_blocks([block, block], tmp_path / f"{name}.png", tmp_path / f"{name}.svg", dpi=60, max_chars=40,
                    suptitle=title + " " + title)
        sizes[name] = mpimg.imread(tmp_path / f"{name}.png").shape[:2]
    assert sizes["long"][1] == sizes["short"][1]  # the same width: the text's
    assert sizes["long"][0] > sizes["short"][0]  # the titles' lines take room above their blocks
    from lstmscope.figures import text_width_pt, wrap_to_width

    wrapped = wrap_to_width("one two three four five six", text_width_pt("one two three", 10) + 1, 10)
    assert wrapped == "one two three\nfour five six"
    width = text_width_pt("here", 10) + 1  # a word wider than a line (a path as a text's name): broken inside
    lines = wrap_to_width("an overlongword here", width, 10).split("\n")
    assert lines[0] == "an" and lines[-1] == "here" and "".join(lines[1:-1]) == "overlongword" and len(lines) > 3
    assert all(text_width_pt(line, 10) <= width for line in lines)
    from lstmscope.figures import figure_title

    fig = plt.figure(figsize=(5, 2))  # as the contiguity figure of one text and one linkage
    title = fig.suptitle(figure_title(fig, "Contiguity of the clusters along the text: mean run length of a cluster "
                                           "label over that of a baseline (1 = no more contiguous than it)", 10),
                         fontsize=10)
    fig.canvas.draw()
    box = title.get_window_extent(fig.canvas.get_renderer())
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width and "\n" in title.get_text()
    plt.close(fig)
    assert wrap_to_width("kept\nbreaks", 1000, 10) == "kept\nbreaks"


def test_a_character_the_font_lacks_is_drawn_in_an_installed_font_that_has_it_on_a_box_as_wide(tmp_path):
    """With a font installed that has 戦 and 場 (built here: two square glyphs one em wide, its family named to come
    first of a machine's fonts, such as a CJK font a workstation has), the heatmap draws them in that font instead of
    NO_GLYPH, their word a text of its own on a box of the columns its glyphs take (two each: one em is 1.66 of
    DejaVu Sans Mono's columns), and every later word still on its own box."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from matplotlib.font_manager import fontManager
    from lstmscope import heatmap

    def square():
        pen = TTGlyphPen(None)
        for x, y in ((100, 0), (100, 800), (900, 800), (900, 0)):
            (pen.lineTo if x != 100 or y else pen.moveTo)((x, y))
        pen.closePath()
        return pen.glyph()

    empty = TTGlyphPen(None).glyph()
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder([".notdef", "uni6226", "uni5834"])
    fb.setupCharacterMap({0x6226: "uni6226", 0x5834: "uni5834"})
    fb.setupGlyf({".notdef": empty, "uni6226": square(), "uni5834": square()})
    fb.setupHorizontalMetrics({name: (1000, 100) for name in (".notdef", "uni6226", "uni5834")})
    fb.setupHorizontalHeader(ascent=880, descent=-120)
    fb.setupNameTable({"familyName": "AAA Lstmscope Test Han", "styleName": "Regular"})
    fb.setupOS2(sTypoAscender=880, usWinAscent=880, usWinDescent=120)
    fb.setupPost()
    path = tmp_path / "han.ttf"
    fb.save(str(path))
    before = list(fontManager.ttflist)
    fontManager.addfont(str(path))
    heatmap._other_fonts.cache_clear()
    try:
        assert heatmap.fallback_font("戦") == ("AAA Lstmscope Test Han", str(path))
        assert heatmap.fallback_font("a") is None and heatmap.fallback_font("\t") is None
        assert heatmap.word_columns("戦場") == 4 and heatmap.word_columns("戦3") == 3
        assert heatmap.word_columns("戦場" * 5) == 17  # 10 em = 16.6 columns, rounded up once, not 2 per glyph
        words = ["The", "戦場", "3", "of", "\t"]
        values = np.linspace(-1, 1, len(words))
        block = TextBlock("glyphs", words, values, symmetric_norm(values), "h")
        dpi, fontsize = 100, 10.0
        with plt.rc_context({**heatmap.RC, "figure.dpi": dpi}):
            fig = heatmap._figure([block], 40, fontsize, None, plt.get_cmap(heatmap.CMAP))
            fig.canvas.draw()
            texts = [t for ax in fig.axes for t in ax.texts]
            han = [t for t in texts if t.get_text() == "戦場"]
            lines = [t.get_text() for t in texts if t.get_fontfamily() == [heatmap.FONT]]
            title = [t.get_text() for t in texts if t.get_text().startswith("glyphs")]
            assert len(han) == 1 and han[0].get_fontfamily() == [heatmap.FONT, "AAA Lstmscope Test Han"]
            assert han[0].get_position()[0] == 4  # its column: after "The" and a space
            width = han[0].get_window_extent().width  # two glyphs of one em each, not two of DejaVu's columns
            assert width == pytest.approx(2 * fontsize / 72 * dpi, abs=3.0)
            plt.close(fig)
        width = max(map(len, lines))  # the black and the white text of the line (dark fills), laid over each other
        shown = "".join(max(chars) for chars in zip(*(line.ljust(width) for line in lines)))
        assert shown == f"The      3 of {heatmap.NO_GLYPH}"  # "3" at column 4 + 4 + 1: the Han word's columns, a space
        assert [t.replace("\n", " ") for t in title] == [f"glyphs (1 character no installed font has, drawn as "
                                                          f"{heatmap.NO_GLYPH})"]  # the tab only
    finally:
        fontManager.ttflist[:] = before
        fontManager._findfont_cached.cache_clear()
        heatmap._other_fonts.cache_clear()


def test_titles_break_between_phrases_not_inside_one():
    """A line of a wrapped title ends where a phrase does (after "·", ":" or ",", before a parenthesis or a
    preposition) when that leaves it at least 60 % full, rather than at the last word that fits; never after "=" or
    a preposition, nor inside a formula in parentheses, when another place fits."""
    from lstmscope.figures import text_width_pt, wrap_to_width

    def wrapped(text, first_line):  # wrapped so that ``first_line`` is the widest first line that fits
        lines = wrap_to_width(text, text_width_pt(first_line, 10) + 0.5, 10).split("\n")
        assert all(text_width_pt(line, 10) <= text_width_pt(first_line, 10) + 0.5 for line in lines)
        assert " ".join(lines) == text  # words kept, in order, each line break one space
        return lines

    lines = wrapped("alpha beta gamma delta: epsilon zeta eta theta iota", "alpha beta gamma delta: epsilon zeta")
    assert lines[0] == "alpha beta gamma delta:", lines
    lines = wrapped("d0.0_r0 · test (its first 4000 tokens) · layer 1, cell state c · ward linkage",
                    "d0.0_r0 · test (its first 4000 tokens) · layer 1, cell")
    assert lines[0] == "d0.0_r0 · test (its first 4000 tokens) ·", lines  # the separator, not the comma after it
    lines = wrapped("the share of all the token pairs in one cluster = chance",
                    "the share of all the token pairs in one cluster =")
    assert lines == ["the share of all the token pairs", "in one cluster = chance"], lines
    lines = wrapped("the model's expectancy of each word p(word | preceding words) here and there",
                    "the model's expectancy of each word p(word | preceding")
    assert lines[0] == "the model's expectancy of each word", lines  # before the formula, not inside it
    # greedy where no place is better: the last word that fits
    assert wrapped("one two three four five six", "one two three") == ["one two three", "four five six"]


def test_a_word_without_a_value_is_framed_not_filled_unlike_a_value_near_zero(tmp_path):
    """The colour map's middle (a value of 0 on the symmetric scale) is light grey, so a word without a value
    (NaN: the first word's expectancy, words an ablation did not read) gets no fill, only a dotted frame."""
    from matplotlib.colors import to_hex
    from lstmscope.heatmap import CMAP

    values = np.array([np.nan, -1.0, 0.0, 1.0, np.nan])
    block = TextBlock("gaps", ["first", "low", "zero", "high", "unread"], values, symmetric_norm(values), "h")
    with plt.rc_context({"svg.fonttype": "none"}):
        draw_blocks([block], tmp_path / "g.png", tmp_path / "g.svg", dpi=60, max_chars=40)
    svg = (tmp_path / "g.svg").read_text()
    boxes = re.findall(r'<path d="M [^"]*z\s*"[^>]*style="([^"]*)"', svg)
    framed = [b for b in boxes if "stroke-dasharray" in b]
    filled = [re.search(r"fill: (#[0-9a-f]{6})", b).group(1) for b in boxes if "stroke-dasharray" not in b
              and re.search(r"fill: (#[0-9a-f]{6})", b)]
    assert len(framed) == 2 and all("fill: none" in b for b in framed)
    cmap = plt.get_cmap(CMAP)
    colours = [to_hex(cmap(block.norm(v))) for v in (-1.0, 0.0, 1.0)]
    assert all(c in filled for c in colours) and colours[1] != "#ffffff"
    # a probability of 0 cannot be shown on the expectancy's log scale: framed like a missing value
    p = np.array([np.nan, 0.5, 0.0, 0.01])
    block = TextBlock("p", ["first", "likely", "impossible", "rare"], p, expectancy_norm(p), "p")
    with plt.rc_context({"svg.fonttype": "none"}):
        draw_blocks([block], tmp_path / "p.png", tmp_path / "p.svg", dpi=60, max_chars=40)
    boxes = re.findall(r'<path d="M [^"]*z\s*"[^>]*style="([^"]*)"', (tmp_path / "p.svg").read_text())
    assert sum("stroke-dasharray" in b for b in boxes) == 2


def test_words_on_the_darkest_fills_are_white_the_others_black():
    """Black text on the scale's deep red and blue ends is hard to read: each word gets the text colour (white or
    black) with the higher WCAG contrast against its fill; words without a value stay black."""
    from matplotlib.colors import to_rgb

    from lstmscope.heatmap import CMAP, _figure
    from neurons_support import contrast

    values = np.concatenate([np.linspace(-1, 1, 41), [np.nan]])
    words = [f"w{i}" for i in range(len(values))]
    block = TextBlock("scale", words, values, symmetric_norm(values), "h")
    cmap = plt.get_cmap(CMAP)
    with plt.rc_context({"text.hinting": "no_hinting"}):
        fig = _figure([block], 40, 10.0, None, cmap)
    lay = layout_words(words, 40)
    texts = [(t.get_text(), to_rgb(t.get_color()), round(t.get_position()[1] - 0.5)) for ax in fig.axes
             for t in ax.texts if t.get_text() != "scale"]
    plt.close(fig)
    shown = {}
    for word, (line, col) in zip(words, lay):
        colours = [c for text, c, y in texts if y == line and text[col:col + len(word)] == word]
        assert len(colours) == 1, word  # drawn once
        shown[word] = colours[0]
    for word, v in zip(words, values):
        if np.isnan(v):
            assert shown[word] == (0, 0, 0)
            continue
        fill = to_rgb(cmap(block.norm(v)))
        best = max([(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)], key=lambda c: contrast(fill, c))
        assert shown[word] == best, (word, v)
    assert (1, 1, 1) in shown.values() and (0, 0, 0) in shown.values()  # both used on this scale


def test_colour_bars_of_one_line_passages_keep_their_labels_and_ticks_apart():
    """A probe sentence is one line; its colour bar, with its label written along it and its tick labels, must
    not run into the next block's (a bar as tall as one line did), nor into the next block's text."""
    from lstmscope.heatmap import CMAP, _figure

    words = "the man who the dog saw ran .".split()
    p = np.array([np.nan, 0.01, 0.2, 0.05, 1e-4, 0.3, 0.02, 0.5])
    h = np.linspace(-0.9, 0.9, len(words))
    blocks = [TextBlock("expectancy", words, p, expectancy_norm(p), "p(word | preceding words)"),
              TextBlock("hidden state h", words, h, symmetric_norm(h), "h"),
              TextBlock("cell state c", words, 3 * h, symmetric_norm(3 * h), "c")]
    with plt.rc_context({"text.hinting": "no_hinting"}):
        fig = _figure(blocks, 96, 10.0, None, plt.get_cmap(CMAP))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts, bars = fig.axes[0::2], fig.axes[1::2]  # each block: its text, then its colour bar
        assert [bar.get_ylabel() for bar in bars] == ["p(word | preceding words)", "h", "c"]
        outer = [ax.get_tightbbox(renderer) for ax in bars]  # the bar, its ticks and their labels, its label
        for i, bar in enumerate(bars):
            label = bar.yaxis.label.get_window_extent(renderer)
            frame = bar.get_window_extent(renderer)
            assert frame.y0 - 1 <= label.y0 and label.y1 <= frame.y1 + 1, f"block {i}: the label overhangs its bar"
            ticks = sorted((t.get_window_extent(renderer) for t in bar.yaxis.get_ticklabels()
                            if t.get_visible() and t.get_text()), key=lambda b: b.y0)
            assert len(ticks) >= 2, f"block {i}: {len(ticks)} tick labels"
            assert not any(a.overlaps(b) for a, b in zip(ticks, ticks[1:])), f"block {i}: tick labels touch"
            for j in range(i + 1, 3):
                assert not outer[i].overlaps(outer[j]), f"colour bars {i} and {j} overlap"
                assert not outer[i].overlaps(texts[j].get_tightbbox(renderer)), f"bar {i} reaches block {j}"
    plt.close(fig)


@pytest.mark.parametrize("values, ticks", [
    (np.array([-3e-5, 1e-5, 2e-5]), {"−0.000025", "0.000000", "0.000025"}),  # a near-dead unit's h
    (1 + np.array([8e-6, 1e-5, 1.2e-5]), {"1.000008", "1.000010", "1.000012"}),  # a range around 1
])
def test_a_tiny_or_offset_scale_is_written_on_the_ticks_not_above_the_bar(values, ticks):
    """Values of 1e-5, or all close to 1: matplotlib would write "1e−5" or "1e−6+1" above the colour bar, apart
    from its ticks and near the block's title; each tick carries its whole value instead, and the expectancy's log
    scale keeps its own ticks."""
    from lstmscope.heatmap import CMAP, _figure, range_norm

    words = "the man who".split()
    p = np.array([np.nan, 0.01, 0.2])
    norm = symmetric_norm(values) if values.min() < 0 else range_norm(values)
    fig = _figure([TextBlock("tiny", words, values, norm, "h"),
                   TextBlock("expectancy", words, p, expectancy_norm(p), "p")], 96, 10.0, None, plt.get_cmap(CMAP))
    fig.canvas.draw()
    bar, log_bar = fig.axes[1], fig.axes[3]
    assert bar.yaxis.get_offset_text().get_text() == ""
    shown = {t.get_text() for t in bar.yaxis.get_ticklabels() if t.get_visible() and t.get_text()}
    assert ticks <= shown, shown
    # the expectancy's decades as plain text, no mathtext ("$\\mathdefault{10^{-2}}$" needs fonts a machine may lack)
    low, high = log_bar.get_ylim()
    decades = [t.get_text() for t in log_bar.yaxis.get_ticklabels()
               if t.get_visible() and t.get_text() and low * 0.999 <= t.get_position()[1] <= high * 1.001]
    assert {"10\u207b\u00b2", "10\u2070"} <= set(decades) <= {"10\u207b\u00b2", "10\u207b\u00b9", "10\u2070"}, decades
    assert not [t for t in log_bar.yaxis.get_ticklabels(minor=True) if t.get_text()]
    plt.close(fig)


def test_an_expectancy_scale_of_less_than_a_decade_labels_2_3_and_5_of_it():
    """A floor of 0.2 leaves one decade label (1): the bar labels 0.2, 0.3 and 0.5 too; a wider scale no minor tick."""
    from lstmscope.heatmap import CMAP, _figure

    words = "the man who".split()
    p = np.array([np.nan, 0.25, 0.6])
    fig = _figure([TextBlock("narrow", words, p, expectancy_norm(p, 0.2), "p"),
                   TextBlock("wide", words, p, expectancy_norm(p, 1e-3), "p")], 96, 10.0, None, plt.get_cmap(CMAP))
    fig.canvas.draw()
    for bar, want in ((fig.axes[1], {"0.2", "0.3", "0.5"}), (fig.axes[3], set())):
        low, high = bar.get_ylim()
        minor = {t.get_text() for t in bar.yaxis.get_ticklabels(minor=True)
                 if t.get_text() and low * 0.999 <= t.get_position()[1] <= high * 1.001}
        assert minor == want, minor
    plt.close(fig)


def test_a_log_scales_tick_that_is_no_decade_is_written_as_it_is():
    from lstmscope.heatmap import decade_label

    assert [decade_label(v) for v in (1e-6, 1e-5, 0.001, 1.0, 10.0, 100.0)] == [
        "10\u207b\u2076", "10\u207b\u2075", "10\u207b\u00b3", "10\u2070", "10\u00b9", "10\u00b2"]
    assert [decade_label(v) for v in (0.002, 0.5, 3.0)] == ["0.002", "0.5", "3"]


def test_median_scale_centres_a_neuron_on_its_usual_value_so_a_one_signed_passage_shows_red_and_blue():
    """Most top-KL neurons never change sign: on the symmetric scale a passage of one is a single colour (the
    default run's layer-2 c rows were all dark blue). The median scale (the default) centres the colours on the
    neuron's median over the whole text: red above its usual value, blue below, the colour bar saying the
    middle's value."""
    rng = np.random.default_rng(0)
    c = -3.5 + 0.3 * rng.standard_normal(400)  # never above 0
    c[200:210] = np.linspace(-1.0, -0.5, 10)  # where it leaves its usual value
    h = np.tanh(c) * 0.5
    words = [f"w{i}" for i in range(400)]
    bh, bc = neuron_blocks(words, h, c, 2, 7, 1, "c", 40)  # the default scale
    assert bc.norm.vmin + bc.norm.vmax == pytest.approx(2 * np.median(c))  # centred on the median over the text
    minus = str.maketrans("-", "\u2212")  # a true minus sign, as the axes write one
    assert bc.title.endswith(f"cell state c (grey: its median {np.median(c):.3g})".translate(minus)) and bc.label == "c"
    assert bh.title.endswith(f"hidden state h (grey: its median {np.median(h):.3g})".translate(minus))
    shown = bc.norm(bc.values)
    assert shown.min() == pytest.approx(0.0) and shown.max() > 0.6  # blue and red in one passage
    sym = activation_norm(bc.values, "symmetric")(bc.values)
    assert sym.max() < 0.5  # the same passage on the symmetric scale: blue only
    with pytest.raises(ValueError, match="median over the text is needed"):
        activation_norm(c, "median")


def test_symmetric_scale_shows_the_sign_and_range_scale_the_passages_own_span():
    values = np.array([0.061, 0.064, 0.07, np.nan, 0.066])
    sym, rng = activation_norm(values, "symmetric"), activation_norm(values, "range")
    assert (sym.vmin, sym.vmax) == (-0.07, 0.07) and sym(0.061) > 0.9  # all red: positive
    assert (rng.vmin, rng.vmax) == (0.061, 0.07) and rng(0.061) == 0 and rng(0.07) == 1
    assert activation_norm(np.full(4, 0.25), "range")(0.25) == pytest.approx(0.5)  # constant: middle colour
    with pytest.raises(ValueError, match="heatmap scale 'linear': choose one of median, symmetric, range"):
        activation_norm(values, "linear")
    words = [f"w{i}" for i in range(50)]
    h, c = np.linspace(0.2, 0.3, 50), np.linspace(-4.0, -1.0, 50)
    bh, bc = neuron_blocks(words, h, c, 2, 7, 1, "c", 10, scale="range")  # ranked by c: |c| peaks at the start
    assert bh.words == bc.words == words[:10] and "tokens 0-9" in bh.title
    assert (bh.norm.vmin, bh.norm.vmax) == (h[0], h[9]) and (bc.norm.vmin, bc.norm.vmax) == (c[0], c[9])


def test_words_and_values_must_match(tmp_path):
    block = TextBlock("bad", ["a", "b"], np.zeros(3), symmetric_norm(np.zeros(3)), "h")
    with pytest.raises(ValueError, match="2 words but 3 values"):
        draw_blocks([block], tmp_path / "x.png", tmp_path / "x.svg")
    assert not (tmp_path / "x.png").exists()


def test_neuron_heatmaps_for_every_layer_and_state(tiny, divergence_csv, tmp_path, monkeypatch):
    """Each (layer, state) figure draws that layer's top neurons by KL of that state, in rank order, each as its h
    block above its c block over the same words, with the values of that neuron in that layer's h and c."""
    import lstmscope.neuron_heatmaps as hm

    drawn, draw = {}, hm.draw_blocks
    monkeypatch.setattr(hm, "draw_blocks", lambda blocks, png, *a, **k: (drawn.update({png: blocks}),
                                                                          draw(blocks, png, *a, **k)))
    outputs = {(k, s): (tmp_path / f"l{k}{s}.png", tmp_path / f"l{k}{s}.svg") for k in range(1, LAYERS + 1)
               for s in ("h", "c")}
    text_heatmaps(tiny.activations, divergence_csv, outputs, neurons=2, passage_tokens=30, dpi=50)
    table = pd.read_csv(divergence_csv)
    with h5py.File(tiny.activations) as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        for (layer, state), (png, svg) in outputs.items():
            assert mpimg.imread(png).shape[0] > 100 and svg.stat().st_size > 10_000
            live = table[(table.layer == layer) & (table.state == state) & ~table.dead.astype(bool)]
            want = live.sort_values("rank")["neuron"].head(2).tolist()
            blocks = drawn[png]
            assert [b.label for b in blocks] == ["h", "c"] * len(want)
            for (bh, bc), neuron in zip(zip(blocks[::2], blocks[1::2]), want):
                assert int(re.search(r"neuron (\d+)", bh.title).group(1)) == neuron, (layer, state)
                assert f"of {state})" in bh.title and bh.title.split(":")[0] == bc.title.split(":")[0]
                start = int(re.search(r"tokens (\d+)-", bh.title).group(1))
                stop = start + len(bh.words)
                assert bh.words == bc.words == words[start:stop] and len(bh.words) == 30
                np.testing.assert_array_equal(bh.values, f[f"layer{layer}/h"][start:stop, neuron])
                np.testing.assert_array_equal(bc.values, f[f"layer{layer}/c"][start:stop, neuron])


def test_a_layer_state_whose_neurons_are_all_dead_gets_a_figure_that_says_so(degenerate, tmp_path, caplog):
    dead = pd.read_csv(degenerate.divergence.with_name("dead.csv"))
    assert len(dead[(dead.layer == 2) & (dead.state == "h")]) == HIDDEN
    outputs = {(2, s): (tmp_path / f"l2{s}.png", tmp_path / f"l2{s}.svg") for s in ("h", "c")}
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        text_heatmaps(degenerate.activations, degenerate.divergence, outputs, neurons=2, passage_tokens=30, dpi=50)
    message = (f"d0.2_r0, text test: layer 2, hidden state h: no live neuron to draw; all {HIDDEN} are dead (listed "
               "in dead_neurons.csv)")
    assert message in outputs[(2, "h")][1].read_text() and message in caplog.text
    assert mpimg.imread(outputs[(2, "c")][0]).shape[0] > 100  # the live c of the same layer: its heatmaps


def test_expectancy_heatmap_colours_each_word_by_its_own_probability(tiny, tmp_path, monkeypatch):
    import lstmscope.heatmap as hm
    drawn = []
    monkeypatch.setattr(hm, "draw_blocks", lambda blocks, png, svg, dpi=150: drawn.extend(blocks))
    expectancy_heatmap(tiny.activations, tmp_path / "e.png", tmp_path / "e.svg", tokens=40, dpi=50)
    with h5py.File(tiny.activations) as f:
        words = [w.decode() for w in f["tokens/words"][:40]]
        p = f["expectancy"][:40].astype(np.float64)
    (block,) = drawn
    assert list(block.words) == words  # word t beside p(word t | words before it), not its neighbour's
    np.testing.assert_array_equal(block.values, p)
    assert np.isnan(block.values[0]) and np.isfinite(block.values[1:]).all()  # the first word has no context
    assert block.norm.vmin == pytest.approx(min(p[1:].min(), 0.1)) and block.norm.vmax == 1.0
    assert f"perplexity of these words {np.exp(-np.mean(np.log(p[1:]))):.0f};" in block.title


def test_expectancy_floor_fixes_the_scale_and_draws_lower_probabilities_in_its_colour(tiny, tmp_path, monkeypatch):
    """heatmap.expectancy_floor: every expectancy figure's scale runs from the floor to 1, whatever its words, so a
    colour is one probability in all of them; a word below the floor takes its colour, and the title and the colour
    bar's arrow say so."""
    import lstmscope.heatmap as hm
    from lstmscope.heatmap import _figure

    drawn = []
    monkeypatch.setattr(hm, "draw_blocks", lambda blocks, png, svg, dpi=150: drawn.extend(blocks))
    with h5py.File(tiny.activations) as f:
        p = f["expectancy"][:40].astype(np.float64)
    floor = float(np.quantile(p[1:], 0.25))  # a quarter of the words below it
    below = int((p[1:] < floor).sum())
    assert 0 < below < 39
    expectancy_heatmap(tiny.activations, tmp_path / "e.png", tmp_path / "e.svg", tokens=40, dpi=50, floor=floor)
    lowest = 1e-12  # below every word: nothing clipped
    expectancy_heatmap(tiny.activations, tmp_path / "f.png", tmp_path / "f.svg", tokens=40, dpi=50, floor=lowest)
    clipped, whole = drawn
    assert (clipped.norm.vmin, clipped.norm.vmax) == (floor, 1.0) and (whole.norm.vmin, whole.norm.vmax) == (lowest, 1.0)
    assert np.isnan(clipped.values[0]) and np.isnan(whole.values[0])  # still no context for the first word
    np.testing.assert_array_equal(clipped.values[1:], np.maximum(p[1:], floor))
    np.testing.assert_array_equal(whole.values, p)
    assert clipped.title.endswith(f"; {below} words below p = {floor:g}, in its colour") and "below" not in whole.title
    assert (clipped.extend, whole.extend) == ("min", "neither")
    for block in (clipped, whole):  # the colour bar: an arrow below it exactly where words lie below its scale
        with plt.rc_context(hm.RC):
            fig = _figure([block], 96, 10.0, None, plt.get_cmap(hm.CMAP))
        assert fig.axes[1]._colorbar.extend == block.extend
        plt.close(fig)
    # a probability of 0 is below any floor: drawn in its colour, not framed as a word without a value
    zero = expectancy_block("t", ["first", "never", "sure"], np.array([np.nan, 0.0, 1.0]), "p", floor=1e-6)
    assert np.isnan(zero.values[0]) and zero.values[1] == 1e-6 and zero.title == "t; 1 word below p = 1e-06, in its colour"
    with pytest.raises(ValueError, match="expectancy floor 0.0: must be a probability between 0 and 1"):
        expectancy_block("t", ["a"], np.array([0.5]), "p", floor=0.0)


def test_expectancy_heatmap_and_bad_layer(tiny, divergence_csv, tmp_path):
    expectancy_heatmap(tiny.activations, tmp_path / "e.png", tmp_path / "e.svg", tokens=40, dpi=50)
    assert mpimg.imread(tmp_path / "e.png").shape[0] > 100
    with pytest.raises(ValueError, match="heatmap scale 'log'"):
        text_heatmaps(tiny.activations, divergence_csv, {(1, "h"): (tmp_path / "a.png", tmp_path / "a.svg")}, 2, 30,
                      scale="log")
    with pytest.raises(ValueError, match=r"layer 3 / state 'h' does not exist"):
        text_heatmaps(tiny.activations, divergence_csv, {(3, "h"): (tmp_path / "a.png", tmp_path / "a.svg")}, 2, 30)
    with pytest.raises(ActivationsError, match="missing.h5"):
        expectancy_heatmap(tmp_path / "missing.h5", tmp_path / "m.png", tmp_path / "m.svg", tokens=40)
    # another model's table (or another text's) would draw that model's top neurons under this one's name
    other = pd.read_csv(divergence_csv).assign(model="d0.7_r0")
    other.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match=r"other.csv is the divergence table of model d0.7_r0 / text test, but "
                                         r".*activations.h5 is of d0.2_r0 / test"):
        text_heatmaps(tiny.activations, tmp_path / "other.csv", {(1, "h"): (tmp_path / "a.png", tmp_path / "a.svg")},
                      2, 30)
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "m.png").exists()


def test_glyph_advances_match_the_layout_so_words_stay_on_their_boxes():
    from lstmscope.heatmap import CHAR_EM, FONT, RC

    with plt.rc_context(RC):
        fig = plt.figure(figsize=(10, 2), dpi=150)
        text = fig.text(0, 0.5, "<unk> " * 20, family=FONT, fontsize=10)
        fig.canvas.draw()
        width = text.get_window_extent().width
        plt.close(fig)
    expected = 120 * CHAR_EM * 10 / 72 * 150
    assert width == pytest.approx(expected, rel=2e-3)


def test_characters_the_font_lacks_are_drawn_one_column_wide_so_the_line_stays_on_its_boxes(monkeypatch):
    """WikiText's train split holds 戦場のヴァルキュリア3: DejaVu Sans Mono has none of those glyphs, and another
    font's (or none) has another width, so the rest of the line slid off its boxes. Where no installed font has
    them (here: no other font at all, whatever this machine has), each such character is drawn as NO_GLYPH, one
    column wide, and the block's title counts them."""
    from lstmscope import heatmap
    from lstmscope.heatmap import CHAR_EM, CMAP, NO_GLYPH, RC, _figure

    monkeypatch.setattr(heatmap, "_other_fonts", lambda: ())

    words = ["The", "戦場のヴァルキュリア3", "(", "Valkyria", "\tof", ")", "is", "a", "game", "é", "—", "€"]
    values = np.linspace(-1, 1, len(words))
    block = TextBlock("glyphs", words, values, symmetric_norm(values), "h")
    dpi, fontsize = 100, 10.0
    with plt.rc_context({**RC, "figure.dpi": dpi}):
        fig = _figure([block], 40, fontsize, None, plt.get_cmap(CMAP))
        fig.canvas.draw()
        texts = [t for ax in fig.axes for t in ax.texts]
        lines = [t for t in texts if t.get_fontfamily() == ["DejaVu Sans Mono"]]
        title = [t.get_text() for t in texts if t.get_text().startswith("glyphs")]
        widths = [(t.get_text(), t.get_window_extent().width) for t in lines]
        plt.close(fig)
    for text, width in widths:  # every line exactly its characters' columns wide: each word on its box
        assert width == pytest.approx(len(text) * CHAR_EM * fontsize / 72 * dpi, abs=2.0), text
    # ten of the game's name (no other font), a tab (no font draws one)
    assert [t.replace("\n", " ") for t in title] == [
        f"glyphs (11 characters no installed font has, drawn as {NO_GLYPH})"]
    shown = "".join(t for t, _ in widths)
    assert NO_GLYPH * 10 + "3" in shown and "Valkyria" in shown and "é" in shown and "€" in shown

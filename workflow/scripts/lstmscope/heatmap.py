"""Text heatmaps: every word drawn as text on a background from blue (low) to red (high).

Words are set in a monospaced font and wrap like a paragraph at ``max_chars``
characters, so the layout is plain arithmetic (:func:`layout_words`) and the same
on every machine. Tokens are drawn literally (``<unk>``, ``<eos>``, ``@-@``, ``$``:
mathtext is off). A character the font lacks (戦) is drawn in the first other font installed on the machine that
has it (:func:`fallback_font`, by family name), its word on a box as many columns wide as that font's glyphs need;
where no installed font has it (or it is a control character such as a tab) it is drawn as :data:`NO_GLYPH`, one
column wide, and the block's title counts them. A colour bar beside each block shows its scale.

Two kinds: (a) one neuron's activation over the passage where it is most active (by
default among the passages without a section heading or the 20 tokens after it: ``heatmap.passage``), its h and
c drawn one above the other (thesis Fig. 5.3/5.4); (b) the model's
expectancy p(w_t | w_<t) of each word on a logarithmic scale (Fig. 4.1).

A neuron's scale is ``median`` (centred on the neuron's median over the whole text, its
usual value, reaching the passage's largest distance from it: red above its usual value,
blue below; most top-KL neurons never change sign, and on the symmetric scale a passage of
one was a single colour), ``symmetric`` (centred on zero, reaching the passage's largest
|value|: the colour shows the sign, as in the thesis) or ``range`` (the passage's
minimum to maximum: the colour shows where in its own range the neuron is).

This module draws; the pipeline's neuron heatmaps, which pick their neurons from the divergence table, are
:mod:`lstmscope.neuron_heatmaps`.
"""
from __future__ import annotations

import functools
import math
import os
import unicodedata
from dataclasses import dataclass, replace
from typing import Sequence

import matplotlib
import PIL.Image
import numpy as np
from matplotlib import colors, ticker
from matplotlib.collections import PatchCollection
from matplotlib.font_manager import FontProperties, findfont, fontManager, get_font, weight_dict
from matplotlib.patches import Rectangle

from .activations_file import open_activations, read_expectancy, read_words
from .colours import VALUE_CMAP, check_expectancy_floor
from .figures import (STATE_NAMES, _tight_box, figure_format, plt, save_figure, save_figure_as, text_width_pt,
                      wrap_to_width)


CMAP = VALUE_CMAP           # blue (low) .. light grey .. red (high); words on its darkest ends are written in white
NO_VALUE_EDGE = "#707070"  # dotted frame, no fill: a word without a value
FONT = "DejaVu Sans Mono"  # ships with matplotlib
CHAR_EM = 1233 / 2048      # advance width of one DejaVu Sans Mono character, in em
NO_GLYPH = "\ufffd"        # drawn for a character no installed font has a glyph of
# Hinting would round every glyph advance to whole pixels and the words would drift off their boxes.
RC = {"text.hinting": "no_hinting"}
LINE_EM = 1.75             # line pitch, in em
SCALES = ("median", "symmetric", "range")
DEFAULT_SCALE = "median"  # heatmap.scale's default


def layout_words(words: Sequence[str], max_chars: int,
                 widths: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """(line, column) of every word when wrapping at ``max_chars`` characters, one space between words; a word
    is as many columns wide as it has characters, or as ``widths`` says (:func:`word_columns`).

    A word longer than a line gets a line of its own (it is never cut).
    """
    if max_chars < 1:
        raise ValueError(f"max_chars={max_chars}: must be >= 1")
    out, line, col = [], 0, 0
    for i, w in enumerate(words):
        n = max(1, len(w) if widths is None else widths[i])
        if col > 0 and col + n > max_chars:
            line, col = line + 1, 0
        out.append((line, col))
        col += n + 1
    return out


def line_texts(words: Sequence[str], layout: Sequence[tuple[int, int]],
               keep: Sequence[bool] | None = None) -> list[str]:
    """The text of every line of a layout, each word at its column (monospaced, padded with spaces); with
    ``keep``, the words not kept are left out (the next word still at its column), so that two such texts, one
    per text colour, put every word on its box."""
    lines: list[str] = []
    for i, (word, (line, col)) in enumerate(zip(words, layout)):
        while len(lines) <= line:
            lines.append("")
        lines[line] = lines[line].ljust(col) + (word if keep is None or keep[i] else "")
    return lines


@functools.lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    """The characters the font file ``path`` has a glyph of (none where FreeType cannot read it)."""
    try:
        return frozenset(get_font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=1)
def _glyphs() -> frozenset[int]:
    """The characters :data:`FONT` has a glyph of (each one column wide: its every glyph has the same advance)."""
    return _charmap(findfont(FontProperties(family=FONT), fallback_to_default=False))


def drawable(char: str) -> bool:
    """Whether :data:`FONT` has a glyph of ``char`` (without one, matplotlib draws another font's glyph, of
    another width, or nothing)."""
    return ord(char) in _glyphs()


@functools.lru_cache(maxsize=1)
def _other_fonts() -> tuple[tuple[str, str], ...]:
    """(family, file) of every font installed on the machine that matplotlib knows, by family name, each
    family's regular face: where a character :data:`FONT` lacks is looked for. matplotlib's own fonts are not among
    them: its math fonts map letters to other glyphs, and its Last Resort font draws any character as a box naming
    its Unicode block."""
    own = os.path.realpath(matplotlib.get_data_path())
    families = sorted({entry.name for entry in fontManager.ttflist  # those with a regular face (no other drawn)
                       if entry.style == "normal" and weight_dict.get(entry.weight, entry.weight) == 400
                       and not os.path.realpath(entry.fname).startswith(own + os.sep)})
    found = []
    for family in families:
        try:
            path = findfont(FontProperties(family=family), fallback_to_default=False)
        except ValueError:
            continue
        if not os.path.realpath(path).startswith(own + os.sep):
            found.append((family, path))
    return tuple(found)


def fallback_font(char: str) -> tuple[str, str] | None:
    """(family, file) of the first font (by family name) of :func:`_other_fonts` with a glyph of ``char``; None
    for a character :data:`FONT` has, a control character (a tab: no font draws it) or one no font here has."""
    if drawable(char) or unicodedata.category(char) == "Cc":
        return None
    code = ord(char)
    return next((font for font in _other_fonts() if code in _charmap(font[1])), None)


@functools.lru_cache(maxsize=None)
def _advance_em(path: str, char: str) -> float:
    """How far the glyph of ``char`` in the font ``path`` advances, in em: 0 for a mark set over the character
    before it, 1 for most CJK characters."""
    font = get_font(path)
    font.set_size(72, 72)  # 72 points: the advance in points / 72 is in em
    return font.load_char(ord(char)).linearHoriAdvance / 65536 / 72


def word_columns(word: str) -> int:
    """How many columns a word takes as drawn (at least 1): one per character of :data:`FONT` or drawn as
    :data:`NO_GLYPH`, a character of another font (:func:`fallback_font`) as far as its glyph advances; the word's
    advance, rounded up to whole columns once (ten CJK characters of 1 em take 17 columns, not 10 x 2)."""
    em = 0.0
    for char in word:
        font = fallback_font(char)
        em += CHAR_EM if font is None else _advance_em(font[1], char)
    return max(1, math.ceil(em / CHAR_EM - 0.01))


def drawable_words(words: Sequence[str]) -> tuple[list[str], int]:
    """The words with each character that neither :data:`FONT` nor another installed font
    (:func:`fallback_font`) can draw replaced by :data:`NO_GLYPH`, and how many were replaced."""
    out, replaced = [], 0
    for word in words:
        if all(drawable(ch) for ch in word):
            out.append(word)
            continue
        chars = [ch if drawable(ch) or fallback_font(ch) else NO_GLYPH for ch in word]
        replaced += sum(ch != new for ch, new in zip(word, chars))
        out.append("".join(chars))
    return out, replaced


def drawable_block(block: "TextBlock") -> "TextBlock":
    """The block as drawn: its words :func:`drawable_words`, its title counting what was replaced."""
    words, replaced = drawable_words(block.words)
    if not replaced:
        return block
    return replace(block, words=words, title=f"{block.title} ({replaced} character{'s' if replaced > 1 else ''} "
                                             f"no installed font has, drawn as {NO_GLYPH})")


def needs_light_text(rgba: np.ndarray) -> np.ndarray:
    """Whether white text contrasts better than black with each fill (WCAG relative luminance: below 0.179,
    where the two contrasts are equal)."""
    rgb = np.asarray(rgba, dtype=np.float64)[..., :3]
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722]) < 0.179


def best_window(values: np.ndarray, length: int, avoid: np.ndarray | None = None) -> int:
    """Start of the ``length``-token window with the largest sum of |values| (first one on ties); with
    ``avoid`` (a mask of tokens), only among the windows holding the fewest of them (none, where any can)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    if len(values) <= length:
        return 0
    c = np.concatenate([[0.0], np.cumsum(values)])
    sums = c[length:] - c[:-length]
    if avoid is not None:
        a = np.concatenate([[0], np.cumsum(np.asarray(avoid, dtype=np.int64))])
        inside = a[length:] - a[:-length]
        sums = np.where(inside == inside.min(), sums, -np.inf)
    return int(np.argmax(sums))


@dataclass
class TextBlock:
    """One paragraph of coloured words with its own colour scale."""

    title: str
    words: list[str]
    values: np.ndarray
    norm: colors.Normalize
    label: str
    extend: str = "neither"  # the colour bar's arrow: "min" where values below its scale take its lowest colour


def symmetric_norm(values: np.ndarray) -> colors.Normalize:
    """A scale centred on zero reaching the largest |value| (blue negative, red positive)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    m = float(np.abs(finite).max()) if len(finite) else 1.0
    m = m if m > 0 else 1.0
    return colors.Normalize(vmin=-m, vmax=m)


def range_norm(values: np.ndarray) -> colors.Normalize:
    """A scale from the smallest to the largest value (a constant passage sits in the middle colour)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (-1.0, 1.0)
    if hi <= lo:
        d = max(abs(lo) * 1e-3, 1e-6)
        lo, hi = lo - d, hi + d
    return colors.Normalize(vmin=lo, vmax=hi)


def median_norm(values: np.ndarray, centre: float) -> colors.Normalize:
    """A scale centred on ``centre`` (the neuron's median over the text) reaching the values' largest distance
    from it (red above, blue below)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    m = float(np.abs(finite - centre).max()) if len(finite) else 1.0
    m = m if m > 0 else max(abs(centre) * 1e-3, 1e-6)
    return colors.Normalize(vmin=centre - m, vmax=centre + m)


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"heatmap scale {scale!r}: choose one of {', '.join(SCALES)}")
    return scale


def activation_norm(values: np.ndarray, scale: str, median: float | None = None) -> colors.Normalize:
    """The colour scale of a neuron's ``values`` (a passage): ``median`` (centred on ``median``, the neuron's over
    the whole text), ``symmetric`` or ``range`` (see the module's docstring)."""
    if check_scale(scale) == "median":
        if median is None or not math.isfinite(median):
            raise ValueError(f"heatmap scale median: the neuron's median over the text is needed, got {median}")
        return median_norm(values, median)
    return symmetric_norm(values) if scale == "symmetric" else range_norm(values)


SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def decade_label(value: float, _position: object = None) -> str:
    """A log scale's tick as plain text: a power of ten as 10 with its exponent raised (10⁻⁶), another value as
    it is (``%g``)."""
    exponent = round(math.log10(value)) if value > 0 else None
    if exponent is not None and math.isclose(value, 10.0 ** exponent, rel_tol=1e-9):
        return "10" + str(exponent).translate(SUPERSCRIPT)
    return f"{value:g}"


def between_decades(value: float, _position: object = None) -> str:
    """A log scale's minor tick, labelled (as it is, ``%g``) where it is 2, 3 or 5 of its decade, else not."""
    if value <= 0:
        return ""
    mantissa = value / 10.0 ** math.floor(math.log10(value))
    return f"{value:g}" if any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (2, 3, 5)) else ""


def shown(value: float, spec: str) -> str:
    """A number as a figure's text writes it: formatted by ``spec`` (``"+.2f"``), with a true minus sign, as matplotlib
    writes the axes' numbers."""
    return ticker.Formatter.fix_minus(format(value, spec))


def scale_note(scale: str, median: float | None, over: str | None = None) -> str:
    """What a block's title adds on the ``median`` scale: the value of its grey middle (``over``: the text whose
    median it is, where that is not the text drawn)."""
    if scale != "median":
        return ""
    return f" (grey: its median {shown(median, '.3g')}{f' over text {over}' if over is not None else ''})"


def draw_blocks(blocks: Sequence[TextBlock], png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150,
                max_chars: int = 96, fontsize: float = 10.0, suptitle: str | None = None) -> None:
    """Draw the blocks one above the other, each with a colour bar, and save PNG and SVG."""
    _render(blocks, lambda fig: save_figure(fig, png, svg, dpi=dpi), max_chars, fontsize, suptitle)


#: The most pixels a command's PNG may have: Pillow's limit (89.5 megapixels), above which it warns of a
#: decompression bomb (and refuses at twice that). ``--passage 5000 --dpi 1200`` drew 11 213 x 391 672 pixels
#: (235 MB), which few programs open, and ran out of memory under a limit.
MAX_PIXELS = PIL.Image.MAX_IMAGE_PIXELS


def draw_blocks_to(blocks: Sequence[TextBlock], path: str | os.PathLike, dpi: int = 150, max_chars: int = 96,
                   fontsize: float = 10.0, suptitle: str | None = None, max_pixels: int = MAX_PIXELS) -> None:
    """Like :func:`draw_blocks`, into one file whose format is its suffix (.png, .svg or .pdf); a PNG of more than
    ``max_pixels`` (the box it will be saved in, measured before it is drawn: a word longer than a line runs past
    the figure's right edge, and the box with it) is a ValueError, and nothing is written."""
    def save(fig) -> None:
        if figure_format(path) == "png":  # (a vector figure has no pixels to count: no box measured for it)
            box = _tight_box(fig)  # (inches)
            width, height = int(round(box.width * dpi)), int(round(box.height * dpi))
            if width * height > max_pixels:
                plt.close(fig)
                raise ValueError(f"{path}: {width} x {height} pixels at {dpi} dpi, {width * height / 1e6:.0f} "
                                 f"megapixels; at most {max_pixels / 1e6:.1f} (Pillow's limit): draw fewer tokens, "
                                 "at a lower dpi, or as SVG or PDF")
        save_figure_as(fig, path, dpi=dpi)

    _render(blocks, save, max_chars, fontsize, suptitle)


def _render(blocks: Sequence[TextBlock], save, max_chars: int, fontsize: float, suptitle: str | None) -> None:
    if not blocks:
        raise ValueError("no text blocks to draw")
    for block in blocks:
        if len(block.words) != len(block.values):
            raise ValueError(f"{block.title}: {len(block.words)} words but {len(block.values)} values")
    cmap = plt.get_cmap(CMAP)
    with plt.rc_context(RC):  # also while saving: that is when the text is laid out
        save(_figure(blocks, max_chars, fontsize, suptitle, cmap))


def colour_bar_length(label: str) -> float:
    """Inches a vertical colour bar needs so that neither its label (written along it) nor three tick labels
    run past its ends into the next block's."""
    label_pt = text_width_pt(label, plt.rcParams["axes.labelsize"])
    ticks_pt = 3 * 1.7 * FontProperties(size=plt.rcParams["ytick.labelsize"]).get_size_in_points()
    return max(label_pt + 8, ticks_pt) / 72.0


def _figure(blocks: Sequence[TextBlock], max_chars: int, fontsize: float, suptitle: str | None,
            cmap: colors.Colormap) -> "plt.Figure":
    blocks = [drawable_block(b) for b in blocks]
    char_in = CHAR_EM * fontsize / 72.0
    line_in = LINE_EM * fontsize / 72.0
    widths = [[word_columns(w) for w in b.words] for b in blocks]
    layouts = [layout_words(b.words, max_chars, cols) for b, cols in zip(blocks, widths)]
    n_lines = [lay[-1][0] + 1 if lay else 1 for lay in layouts]
    gap_in = 0.25
    text_w = max_chars * char_in
    left_in, cbar_gap_in, cbar_w_in, right_in = 0.15, 0.25, 0.15, 0.9
    fig_w = left_in + text_w + cbar_gap_in + cbar_w_in + right_in
    # titles wrap within the text and its colour bar, whose width sets the figure's (a long title would widen it,
    # leaving the colour bar in the middle): 1.2 lines of their size apart
    title_w_pt = (text_w + cbar_gap_in + cbar_w_in) * 72
    if suptitle:
        suptitle = wrap_to_width(suptitle, title_w_pt, fontsize + 1)
    blocks = [replace(b, title=wrap_to_width(b.title, title_w_pt, fontsize)) for b in blocks]
    titles_in = [0.32 + b.title.count("\n") * 1.2 * fontsize / 72 for b in blocks]
    top_in = 0.25 + 0.2 * (suptitle.count("\n") + 1) if suptitle else 0.1  # a line of the title: 0.2 in
    bodies = [n * line_in for n in n_lines]
    bars = [max(body, colour_bar_length(block.label)) for body, block in zip(bodies, blocks)]
    heights = [bar + title_in for bar, title_in in zip(bars, titles_in)]  # a short passage: room for its bar
    fig_h = top_in + sum(heights) + gap_in * len(blocks)
    fig = plt.figure(figsize=(fig_w, fig_h))
    if suptitle:
        fig.suptitle(suptitle, x=left_in / fig_w, y=1 - 0.12 / fig_h, ha="left", va="top", fontsize=fontsize + 1,
                     parse_math=False)  # a text's name of one's own (lstmscope-dump --name) as it is
    y_top = fig_h - top_in
    for block, lay, cols, lines, body, bar, title_in in zip(blocks, layouts, widths, n_lines, bodies, bars,
                                                            titles_in):
        ax = fig.add_axes([left_in / fig_w, (y_top - title_in - body) / fig_h, text_w / fig_w, body / fig_h])
        ax.set_xlim(0, max_chars)
        ax.set_ylim(lines, 0)
        ax.axis("off")
        ax.text(0, -0.32 / line_in * 0.35, block.title, fontsize=fontsize, va="bottom", ha="left",  # its last line
                parse_math=False)
        normed = block.norm(np.ma.masked_invalid(np.asarray(block.values, dtype=np.float64)))
        has = ~np.ma.getmaskarray(normed)  # NaN, and what the scale cannot show (a probability of 0 on a log scale)
        boxes = [Rectangle((col - 0.25, line + 0.08), width + 0.5, 0.84) for width, (line, col) in zip(cols, lay)]
        fills = cmap(normed[has])
        ax.add_collection(PatchCollection([b for b, v in zip(boxes, has) if v], facecolors=fills, edgecolors="none"))
        light = np.zeros(len(block.words), dtype=bool)  # white text on the darkest fills (the scale's ends)
        light[np.flatnonzero(has)] = needs_light_text(fills)
        # a word without a value (NaN, e.g. the expectancy of the first word) has no fill, only a dotted frame:
        # the colour map's own middle is light grey, so a grey fill would look like a value near 0
        ax.add_collection(PatchCollection([b for b, v in zip(boxes, has) if not v], facecolors="none",
                                          edgecolors=NO_VALUE_EDGE, linestyles=":", linewidths=0.8))
        # Monospaced and one space apart, so each line is a single text whose words fall on their boxes: one text
        # in black, and one in white holding the words on dark fills. A word with a character of another font is a
        # text of its own, at its column (that font's glyphs have other widths).
        apart = np.array([any(fallback_font(ch) for ch in word) for word in block.words], dtype=bool)
        for colour, keep in (("black", ~light), ("white", light)):
            for line, text in enumerate(line_texts(block.words, lay, keep & ~apart)):
                if text.strip():
                    ax.text(0, line + 0.5, text, family=FONT, fontsize=fontsize, va="center_baseline", ha="left",
                            color=colour, parse_math=False)
        for i in np.flatnonzero(apart):
            word, (line, col) = block.words[i], lay[i]
            families = [FONT] + sorted({font[0] for font in map(fallback_font, word) if font})
            ax.text(col, line + 0.5, word, family=families, fontsize=fontsize, va="center_baseline", ha="left",
                    color="white" if light[i] else "black", parse_math=False)
        cax = fig.add_axes([(left_in + text_w + cbar_gap_in) / fig_w, (y_top - title_in - bar) / fig_h,
                            cbar_w_in / fig_w, bar / fig_h])
        bar_axis = fig.colorbar(plt.cm.ScalarMappable(norm=block.norm, cmap=cmap), cax=cax, label=block.label,
                                extend=block.extend)
        if isinstance(bar_axis.ax.yaxis.get_major_formatter(), ticker.ScalarFormatter):  # a linear scale
            # the values on the ticks themselves: a scale of 1e-5 (or one offset from 1) gets no separate "1e−5"
            # or "1e−6+1" above the bar, which read as a tick and could touch the block's title
            plain = ticker.ScalarFormatter(useOffset=False)
            plain.set_scientific(False)
            bar_axis.ax.yaxis.set_major_formatter(plain)
        elif isinstance(block.norm, colors.LogNorm):  # the expectancy: its decades as plain text, 10⁻⁶ … 10⁰
            # (matplotlib's own labels are mathtext, which needs fonts a machine may not find: a warning per
            # label in every log, and another font)
            bar_axis.ax.yaxis.set_major_formatter(ticker.FuncFormatter(decade_label))
            # a scale of less than a decade (a floor of 0.2) has one decade label at most: then 2, 3 and 5 of its
            # decade are labelled too, as matplotlib's own formatter did
            few = block.norm.vmax / block.norm.vmin < 10
            bar_axis.ax.yaxis.set_minor_formatter(ticker.FuncFormatter(between_decades) if few
                                                  else ticker.NullFormatter())
        y_top -= title_in + bar + gap_in
    return fig


def neuron_blocks(words: Sequence[str], h: np.ndarray, c: np.ndarray, layer: int, neuron: int, rank: int,
                  state: str, passage_tokens: int, scale: str = DEFAULT_SCALE,
                  avoid: np.ndarray | None = None) -> list[TextBlock]:
    """The h and c blocks of one neuron (its values over the whole text) over the passage where its ranked state
    is most active (among those holding the fewest ``avoid`` tokens, see :func:`best_window`)."""
    ranked_values = h if state == "h" else c
    start = best_window(ranked_values, passage_tokens, avoid)
    stop = min(len(words), start + passage_tokens)
    head = f"layer {layer}, neuron {neuron} (KL rank {rank} of {state}), tokens {start}-{stop - 1}"
    return state_blocks(head, words[start:stop], h[start:stop], c[start:stop], scale, text_median(h), text_median(c))


def text_median(values: np.ndarray) -> float:
    """A neuron's median over the text (its finite values), the middle of the ``median`` scale."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else math.nan


def state_blocks(head: str, words: Sequence[str], h: np.ndarray, c: np.ndarray, scale: str,
                 h_median: float | None = None, c_median: float | None = None,
                 median_over: str | None = None) -> list[TextBlock]:
    """A neuron's h block above its c block, over the same words, each with its own ``scale`` (``median``:
    centred on ``h_median`` and ``c_median``, the neuron's medians over the whole text, or over the text named
    ``median_over``)."""
    w = list(words)
    return [TextBlock(f"{head}: {STATE_NAMES['h']}{scale_note(scale, h_median, median_over)}", w, h,
                      activation_norm(h, scale, h_median), "h"),
            TextBlock(f"{head}: {STATE_NAMES['c']}{scale_note(scale, c_median, median_over)}", w, c,
                      activation_norm(c, scale, c_median), "c")]


def notice_figure(message: str, png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> None:
    """A figure holding one line of text, where there is nothing to draw."""
    fig = plt.figure(figsize=(8, 0.6))
    fig.text(0.01, 0.5, message, va="center", ha="left", fontsize=10, parse_math=False)
    save_figure(fig, png, svg, dpi=dpi)


def expectancy_norm(values: np.ndarray, floor: float | None = None) -> colors.LogNorm:
    """A log scale from ``floor`` to 1; without one, from the smallest probability (or 0.1, if all are larger)."""
    if floor is not None:
        return colors.LogNorm(vmin=check_expectancy_floor(floor), vmax=1.0)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    lo = float(finite.min()) if len(finite) else 1e-6
    return colors.LogNorm(vmin=min(lo, 0.1), vmax=1.0)


def expectancy_block(title: str, words: Sequence[str], p: np.ndarray, label: str,
                     floor: float | None = None) -> TextBlock:
    """The block of the expectancy ``p`` of ``words``. With a ``floor`` the scale is fixed (``floor`` to 1) and a
    probability below it takes its colour: the colour bar's arrow and the title say so, with how many words."""
    p = np.asarray(p, dtype=np.float64)
    if floor is None:
        return TextBlock(title, list(words), p, expectancy_norm(p), label)
    norm = expectancy_norm(p, floor)
    below = int(np.count_nonzero(p < norm.vmin))  # NaN (no context) is not below
    if below:
        title += f"; {below} word{'s' if below > 1 else ''} below p = {norm.vmin:g}, in its colour"
    shown = np.where(p < norm.vmin, norm.vmin, p)  # p = 0 too: the log scale cannot show 0 itself
    return TextBlock(title, list(words), shown, norm, label, extend="min" if below else "neither")


def expectancy_heatmap(activations_path: str | os.PathLike, png: str | os.PathLike, svg: str | os.PathLike,
                       tokens: int, dpi: int = 150, floor: float | None = None) -> None:
    """The model's expectancy of each of the first ``tokens`` words of the text, on a log scale from ``floor``
    (``heatmap.expectancy_floor``; None: the smallest p drawn, at most 0.1) to 1."""
    with open_activations(activations_path) as f:
        n = min(tokens, int(f.attrs["n_tokens"]))
        words = read_words(f)[:n]
        p = read_expectancy(f, 0, n)
        model, text = str(f.attrs["model"]), str(f.attrs["text"])
    ppl = math.exp(-np.nanmean(np.log(p))) if np.isfinite(p).any() else math.nan
    block = expectancy_block(f"{model}, text {text}, tokens 0-{n - 1}: expectancy p(word | preceding words); "
                             f"perplexity of these words {ppl:.0f}; dotted frame = no context (first token)",
                             words, p, "p(word | preceding words)", floor)
    draw_blocks([block], png, svg, dpi=dpi)

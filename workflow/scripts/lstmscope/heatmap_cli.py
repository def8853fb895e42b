r"""``lstmscope-heatmap``: draw any neuron of an activations file, or the expectancy, over any passage.

The pipeline draws the top-ranked neurons of every layer and state; this command draws
the ones you pick (e.g. from ``divergence.csv`` or ``neuron_tracking.csv``), all over one
passage so they can be compared word by word::

    lstmscope-heatmap results/activations/d0.0_r0/test.h5 --neuron 2:37 --neuron 1:5 -o n.png
    lstmscope-heatmap results/activations/d0.0_r0/test.h5 --expectancy --start 400 --passage 120 -o e.svg
    lstmscope-heatmap results/activations/d0.0_r0/test.h5 --neuron 2:1 \
        --ablation results/ablation/d0.0_r0/test.h5 -o removed.png
    lstmscope-heatmap results/activations/d0.0_r0/test.h5 --group 2:top \
        --ablation results/ablation/d0.0_r0/test.h5 -o together.png

Neurons are ``LAYER:INDEX`` with layers from 1 and indices from 0, as in the pipeline's
tables. Without ``--start`` the passage is the one where the first neuron's ``--around``
state (or, ``--around effect``, its removal's effect, among the words the ablation read) has
the largest sum of |value| outside the section headings, their empty lines and the 20 tokens
after each (``--headings``: anywhere; for ``--expectancy`` alone: the text's start), with
``--ablation`` among the words the ablation read; ``--around``
with ``--start``, or ``h``/``c`` without a neuron, is an error rather than ignored.
With ``--ablation`` (the ablation file of the same model and text) every neuron, which must
have been removed on its own there, gets a third block: the effect of its removal on each
word, log p(word) intact minus without it (red: it helped predict the word; a dotted frame: no value).
``--group LAYER:top`` or ``LAYER:random`` adds the joint effect of that layer's top-KL or random
neurons removed together (after the neurons; without ``--neuron`` it also picks the passage).
A text of your own (``lstmscope-dump``) of at most 400 tokens is drawn whole unless ``--start``
or ``--passage`` is given (so ``--around`` has nothing to choose there); of a longer one the
command says which tokens it drew.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
from typing import Sequence

import h5py
import numpy as np

from .ablation_figures import Removal, effect_block, effect_passage, removal_effects, removal_phrase
from .activations_file import (ActivationsError, open_activations, read_expectancy, read_neurons, read_words,
                               state_dataset)
from .cli import (add_expectancy_floor_option, check_inputs, check_kinds, check_output, command_parser, dashed_values,
                  failed, file_name, refuse_pipeline_figure, say, unreadable, writing)
from .colours import DEFAULT_EXPECTANCY_FLOOR
from .figures import FORMATS, figure_format
from .heatmap import (DEFAULT_SCALE, SCALES, TextBlock, best_window, draw_blocks_to, expectancy_block,
                      shown, state_blocks, text_median)
from .joblog import stop_status, stopped_by_sigterm
from .wikitext import passage_avoid

PROG = "lstmscope-heatmap"
DEFAULT_TOKENS = 80
MAX_DPI = 1200  # the schema's maximum of figures.dpi
MAX_TOKENS = 5000  # ~330 lines of 96 characters: a 20 000-pixel-high PNG at 150 dpi; more is unreadable
# a text of fewer tokens gets a note that its own medians (the median scale here) or means (where lstmscope-ablate
# holds removed units) come from a few tokens, and how to take them from a pipeline text
SHORT_TEXT = 1000
WHOLE_OWN_TEXT = 400  # a text of one's own (lstmscope-dump) of at most this many tokens is drawn whole by default
MAX_WIDTH = 500  # characters per line: a figure ~50 inches (7 500 pixels at 150 dpi) wide
NOT_GIVEN = object()  # an option's default that tells it was not given


def _number(text: str) -> bool:
    """Digits 0-9 only (``str.isdigit`` also takes ``²`` and other scripts' digits)."""
    return re.fullmatch(r"\s*[0-9]+\s*", text) is not None


def parse_neuron(spec: str) -> tuple[int, int]:
    """``"2:37"`` -> (2, 37); anything else is an error naming the value."""
    layer, sep, index = spec.partition(":")
    if not sep or not _number(layer) or not _number(index):
        raise ValueError(f"--neuron {spec!r}: expected LAYER:INDEX, e.g. 2:37 (layers from 1, indices from 0)")
    return int(layer), int(index)


def given_once(option: str, parsed: Sequence[tuple[int, int | str]]) -> None:
    """Each neuron (or group) once: one given twice, however it was written (``2:03`` is ``2:3``), is an error
    naming it."""
    twice = sorted({p for p in parsed if parsed.count(p) > 1})
    if twice:
        shown = ", ".join(f"{layer}:{str(which).removesuffix(' all')}" for layer, which in twice)
        raise ValueError(f"{option} given twice: {shown}")


def parse_group(spec: str) -> tuple[int, str]:
    """``"2:top"`` -> (2, "top all"), ``"1:random"`` -> (1, "random all"); anything else is an error naming it."""
    layer, sep, which = spec.partition(":")
    if not sep or not _number(layer) or which.strip() not in ("top", "random"):
        raise ValueError(f"--group {spec!r}: expected LAYER:top or LAYER:random, e.g. 2:top (layers from 1)")
    return int(layer), f"{which.strip()} all"


def neuron_dataset(f: h5py.File, layer: int, state: str, neuron: int) -> h5py.Dataset:
    """The dataset of ``layer``/``state``, after checking that ``neuron`` exists in it."""
    ds = state_dataset(f, layer, state)
    if not 0 <= neuron < ds.shape[1]:
        raise ActivationsError(f"{f.filename}: neuron {neuron} does not exist in layer {layer}; "
                               f"it has neurons 0..{ds.shape[1] - 1}")
    return ds


def effect_start(removal: Removal, tokens: int, avoid: np.ndarray | None) -> int:
    """Start of the passage where a removal's effect is largest, among the words the ablation read."""
    n = removal.tokens
    return effect_passage(removal.effect[:n], tokens, None if avoid is None else avoid[:n])[0]


def around_refusal(start: int | None, around: str | None, neurons: bool, groups: bool, ablation: bool) -> str | None:
    """Why ``--around`` would choose nothing with these options (``neurons``: a --neuron given; ``groups``: a --group
    drawn from an ablation; ``ablation``: an --ablation given), or None where it chooses the passage."""
    if around is None:
        return None
    if start is not None:
        return f"--start {start} and --around {around} both choose the passage: give one of them"
    if not neurons and around in ("h", "c"):
        return (f"--around {around} chooses the passage by the first --neuron's {around}: give --neuron LAYER:INDEX "
                "(without one, the first --group's effect or the text's start picks it)")
    if not neurons and around == "effect" and not groups:
        return "--around effect chooses the passage by a removal's effect: give --neuron or --group with --ablation"
    if neurons and around == "effect" and not ablation:
        return "--around effect needs --ablation: the effect of removing the first neuron"
    return None


def passage(f: h5py.File, neurons: Sequence[tuple[int, int]], start: int | None, tokens: int,
            around: str | None, removals: dict[tuple[int, int], Removal] | None = None,
            first_group: Removal | None = None, avoid: np.ndarray | None = None) -> tuple[int, int]:
    """[start, stop) of the passage drawn (see the module's docstring). ``around`` None is the default: the
    first neuron's h (among the words its ablation read, if its removal is drawn), else the first group's
    effect, else the text's start; an ``around`` that would not be
    used (with ``start``, or nothing it could apply to) is an error rather than silently ignored. A chosen
    passage holds as few ``avoid`` tokens as any can (see :func:`best_window`)."""
    T = int(f.attrs["n_tokens"])
    if tokens < 1:
        raise ValueError(f"--passage {tokens}: must be >= 1")
    refusal = around_refusal(start, around, bool(neurons), first_group is not None, bool(removals))
    if refusal:
        raise ValueError(refusal)
    if start is None:
        if not neurons and first_group is not None:
            start = effect_start(first_group, tokens, avoid)
        elif not neurons:
            start = 0
        else:
            layer, neuron = neurons[0]
            if around == "effect":
                start = effect_start(removals[neurons[0]], tokens, avoid)
            else:  # with its removal drawn: among the words the ablation read, where the effect has a value
                state = around or "h"
                read = removals[neurons[0]].tokens if removals and neurons[0] in removals else T
                neuron_dataset(f, layer, state, neuron)  # the neuron exists, or one line says which do
                start = best_window(_read_state(f, layer, state, neuron, 0, read), tokens,
                                    None if avoid is None else avoid[:read])
    elif not 0 <= start < T:
        raise ActivationsError(f"{f.filename}: --start {start} is outside the text (tokens 0..{T - 1})")
    return start, min(T, start + tokens)


def removals_of(f: h5py.File, words: list[str], ablation: str, neurons: Sequence[tuple[int, int]],
                groups: Sequence[tuple[int, str]] = ()
                ) -> tuple[dict[tuple[int, int], Removal], list[Removal], str]:
    """Each neuron's removal, and each group's, in the ablation file ``ablation`` of the same model and text as
    ``f`` (``words``), and the state whose KL ranked its top neurons."""
    stored = removal_effects(ablation, str(f.attrs["model"]), str(f.attrs["text"]), words,
                             str(f.attrs.get("checkpoint_sha256", "")) or None)
    removals = stored.single
    missing = [f"{layer}:{neuron}" for layer, neuron in neurons if (layer, neuron) not in removals]
    if missing:
        removed = " ".join(f"{layer}:{neuron}" for layer, neuron in sorted(removals)) or "none"
        raise ValueError(f"{ablation}: neuron {', '.join(missing)} was not removed on its own there; "
                         f"removed on their own: {removed}")
    absent = [f"{layer}:{group.split()[0]}" for layer, group in groups if (layer, group) not in stored.groups]
    if absent:
        there = " ".join(f"{layer}:{group.split()[0]}" for layer, group in sorted(stored.groups)) or "none"
        raise ValueError(f"{ablation}: no group {', '.join(absent)} was removed together there; groups: {there}")
    return removals, [stored.groups[g] for g in groups], stored.state


class Drawn(list):
    """:func:`heatmap_blocks`' blocks, in order, and the passage they show: tokens ``begin`` to ``stop`` - 1."""

    def __init__(self, blocks: Sequence[TextBlock], begin: int, stop: int) -> None:
        super().__init__(blocks)
        self.begin, self.stop = begin, stop


H_BOUND = 1 + 1e-3  # |h| = |o tanh(c)| < 1; float16 rounds values near 1 to 1


def _read_state(f: h5py.File, layer: int, state: str, neuron: int, start: int = 0, stop: int | None = None
                ) -> np.ndarray:
    """:func:`read_neurons` of one neuron, with an h beyond what an LSTM's h can be refused as NaN is: a damaged
    file's 504 or 1e30 would be drawn, its colour bar stretched to it and the passage chosen around it."""
    values = read_neurons(f, layer, state, neuron, start, stop)
    if state == "h" and (beyond := np.abs(values) > H_BOUND).any():
        t = int(np.argmax(beyond))
        raise ActivationsError(f"{f.filename}: layer{layer}/h of token {start + t}, neuron {neuron} is "
                               f"{values[t]:g}, which no LSTM's h is (|h| < 1: the file is damaged; dump it again)")
    return values


def heatmap_blocks(f: h5py.File, neurons: Sequence[tuple[int, int]], expectancy: bool, start: int | None,
                   tokens: int, around: str | None = None, scale: str = DEFAULT_SCALE, ablation: str | None = None,
                   groups: Sequence[tuple[int, str]] = (), headings: bool = False,
                   expectancy_floor: float | None = None, median_from: h5py.File | None = None,
                   median_text: str = "") -> Drawn:
    """The blocks drawn (:class:`Drawn`: they and their passage): the expectancy (if asked; its scale from
    ``expectancy_floor`` to 1, or from the passage's smallest p with None), then h above c of every neuron (above the
    effect of its removal, with ``ablation``), then the joint effect of each group (with ``ablation``), over one
    passage, chosen outside the section headings and the tokens after them unless ``headings``. On the median scale each
    neuron's h and c are centred on their medians over ``f``'s text, or over ``median_from``'s (another activations
    file of the same checkpoint, its text named ``median_text`` in the blocks' titles)."""
    if not neurons and not expectancy and not groups:
        raise ValueError("nothing to draw: give --neuron LAYER:INDEX (repeatable), --expectancy and/or --group "
                         "LAYER:top|random with --ablation")
    for layer, neuron in neurons:
        neuron_dataset(f, layer, "h", neuron)  # every neuron is checked before anything is read
    if groups and ablation is None:
        raise ValueError("--group draws the effect of removing a group of neurons: give --ablation ABLATION_H5 too")
    if ablation is not None and not neurons and not groups:
        raise ValueError("--ablation draws the effect of removing a neuron or group: give --neuron LAYER:INDEX or "
                         "--group LAYER:top|random too")
    every_word = read_words(f)
    removals, removed_groups, ranked = (removals_of(f, every_word, ablation, neurons, groups) if ablation is not None
                                        else ({}, [], ""))
    begin, stop = passage(f, neurons, start, tokens, around, removals, removed_groups[0] if removed_groups else None,
                          passage_avoid(every_word, "active" if headings else "prose"))
    read = max((r.tokens for r in [*(removals[n] for n in neurons if n in removals), *removed_groups]), default=None)
    if read is not None and begin >= read:
        raise ValueError(f"{ablation}: the ablation read the first {read} words only; "
                         f"the passage (tokens {begin}-{stop - 1}) lies after them, where the effect has no value: "
                         "give an earlier --start")
    words = every_word[begin:stop]
    span = f"tokens {begin}-{stop - 1}"
    blocks = []
    if expectancy:
        p = read_expectancy(f, begin, stop)
        blocks.append(expectancy_block(f"{span}: expectancy p(word | preceding words)", words, p, "p",
                                       expectancy_floor))
    for layer, neuron in neurons:
        if scale == "median" and median_from is None:  # centred on the neuron's median over the whole text
            h, c = (_read_state(f, layer, st, neuron) for st in ("h", "c"))
            medians = text_median(h), text_median(c)
            h, c = h[begin:stop], c[begin:stop]
        else:
            h, c = (_read_state(f, layer, st, neuron, begin, stop) for st in ("h", "c"))
            medians = ((None, None) if scale != "median" else
                       tuple(text_median(_read_state(median_from, layer, st, neuron)) for st in ("h", "c")))
        blocks += state_blocks(f"layer {layer}, neuron {neuron}, {span}", words, h, c, scale, *medians,
                               median_over=None if median_from is None else median_text)  # another text's median
        if (layer, neuron) in removals:
            r = removals[(layer, neuron)]
            group = f"top-KL of {ranked}" if r.group == "top" else r.group
            change = shown(r.perplexity_change_pct, "+.2f")
            blocks.append(effect_block(f"layer {layer}, neuron {neuron} removed ({group}, "
                                       f"{removal_phrase(r.method)}; perplexity {change}\u00a0% "
                                       f"without it over the first {r.tokens} words): effect on each word",
                                       every_word, r.effect, begin, stop))
    for (layer, _), r in zip(groups, removed_groups):
        which = f"top-KL neurons of {ranked}" if r.group.startswith("top") else "random neurons"
        change = shown(r.perplexity_change_pct, "+.2f")
        blocks.append(effect_block(f"layer {layer}, the {len(r.neurons)} {which} "
                                   f"({' '.join(map(str, r.neurons))}) removed together ({removal_phrase(r.method)}; "
                                   f"perplexity {change}\u00a0% without them over the first "
                                   f"{r.tokens} words): effect on each word", every_word, r.effect, begin, stop))
    return Drawn(blocks, begin, stop)


def build_parser() -> argparse.ArgumentParser:
    ap = command_parser(PROG, "Draw any neuron of an activations file, or the model's "
                              "expectancy of each word, over any passage of its text.", __doc__)
    ap.add_argument("activations", type=file_name, help="an activations file, results/activations/<model>/<text>.h5")
    ap.add_argument("-o", "--output", type=file_name, required=True, help=f"the figure; its suffix gives the format ({', '.join(FORMATS)})")
    ap.add_argument("-n", "--neuron", action="append", default=[], metavar="LAYER:INDEX",
                    help="a neuron to draw, h above c (repeatable)")
    ap.add_argument("-e", "--expectancy", action="store_true", help="draw the model's expectancy of each word too")
    add_expectancy_floor_option(ap, "the passage's smallest p")
    ap.set_defaults(expectancy_floor=NOT_GIVEN)  # given without --expectancy, it is refused (main), not ignored
    ap.add_argument("--start", type=int, default=None, help="first token of the passage (default: see below)")
    ap.add_argument("--passage", "--tokens", dest="tokens", type=int, default=None, metavar="TOKENS",
                    help=f"tokens in the passage (default {DEFAULT_TOKENS}, at most {MAX_TOKENS}; --tokens, its "
                         f"name in earlier releases, is the same option)")
    ap.add_argument("--around", choices=("h", "c", "effect"), default=None,
                    help="what of the first neuron chooses the passage when --start is not given: its h, its c or, "
                         "with --ablation, the effect of its removal (default h; without --neuron, the first "
                         "--group's effect); an error with --start")
    ap.add_argument("--headings", action="store_true",
                    help="let the chosen passage hold section headings (= = Film = =), as heatmap.passage: active "
                         "(default: the most active passage outside them, as heatmap.passage: prose)")
    ap.add_argument("--scale", choices=SCALES, default=None,
                    help="median: centred on the neuron's median over the text (red above its usual value, blue "
                         "below); symmetric: centred on 0, colour = sign; range: the passage's min to max (default "
                         f"{DEFAULT_SCALE}, the pipeline's heatmap.scale)")
    ap.add_argument("--median-from", type=file_name, default=None, metavar="ACTIVATIONS",
                    help="centre the median scale on each neuron's median over this activations file of the same "
                         "checkpoint (e.g. the pipeline's results/activations/<model>/test.h5) instead of over this "
                         "text: for a short text of one's own")
    ap.add_argument("-a", "--ablation", type=file_name, default=None, metavar="ABLATION_H5",
                    help="the ablation file of the same model and text (results/ablation/<model>/<text>.h5): "
                         "draw each neuron's removal effect below its h and c")
    ap.add_argument("-g", "--group", action="append", default=[], metavar="LAYER:top|random",
                    help="with --ablation: the effect of removing that layer's top-KL (or random) neurons together "
                         "(repeatable)")
    ap.add_argument("--dpi", type=int, default=150, help=f"resolution of a PNG (default 150, at most {MAX_DPI})")
    ap.add_argument("--width", type=int, default=96, help=f"characters per line (default 96, at most {MAX_WIDTH})")
    return ap


def drawn_whole(split: str, tokens: int) -> bool:
    """Whether a text is drawn whole when no passage is asked for: one of one's own (lstmscope-dump's, split
    ``file``) of at most WHOLE_OWN_TEXT tokens (drawn); this command's and lstmscope-ablate's --heatmap."""
    return split == "file" and tokens <= WHOLE_OWN_TEXT


def short_text_note(prog: str, tokens: int) -> None:
    """Under SHORT_TEXT tokens, ``prog``'s note that a text of one's own is centred on its own few medians, and how
    to centre it on a pipeline text's (--median-from); this command's and lstmscope-explorer's."""
    if tokens < SHORT_TEXT:
        print(f"{prog}: note: the median scale is centred on each neuron's median over the {tokens} "
              "tokens of this text only; --median-from results/activations/<model>/test.h5 centres it on a pipeline "
              "text's", file=sys.stderr)


def check_median_from(f: h5py.File, other: h5py.File) -> None:
    """``other`` (--median-from's file) was dumped from the checkpoint ``f`` was, as both record it
    (``checkpoint_sha256``): its medians are this model's. Also lstmscope-explorer's --median-from."""
    mine, theirs = (str(g.attrs.get("checkpoint_sha256", "")) for g in (f, other))
    if not mine or not theirs:  # (two files that both lack it are not the same model's either)
        lacking = f.filename if not mine else other.filename
        raise ValueError(f"--median-from {other.filename}: {lacking} has no checkpoint_sha256, so the two cannot be "
                         "told to be one model's")
    if mine != theirs:
        raise ValueError(f"--median-from {other.filename}: dumped from another checkpoint than {f.filename} "
                         "(checkpoint_sha256 differs): its medians are another model's")


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(dashed_values(argv, ("-n", "--neuron", "-g", "--group")))  # -n -1:5: the layer's own error
    try:
        figure_format(args.output)
    except ValueError as exc:
        ap.error(f"--output {exc}")
    for option, value in (("--dpi", args.dpi), ("--width", args.width)):
        if value < 10:  # (the one given wrong named alone, not beside another's default)
            ap.error(f"{option} {value}: must be >= 10")
    if args.width > MAX_WIDTH:  # 100 000 characters drew a PNG a million pixels wide
        ap.error(f"--width {args.width}: at most {MAX_WIDTH} characters per line")
    if args.dpi > MAX_DPI:  # as the pipeline's figures.dpi; 100 000 dpi ran out of memory drawing
        ap.error(f"--dpi {args.dpi}: at most {MAX_DPI}")
    asked, args.tokens = args.tokens is not None, DEFAULT_TOKENS if args.tokens is None else args.tokens
    if args.tokens < 1:  # like the other out-of-range numbers above: a usage error (exit 2)
        ap.error(f"--passage {args.tokens}: must be >= 1")
    if args.tokens > MAX_TOKENS:
        ap.error(f"--passage {args.tokens}: at most {MAX_TOKENS} words make a readable figure; draw a long text in "
                 "parts with --start")
    if args.median_from and args.scale not in (None, "median"):
        ap.error(f"--median-from centres the median scale: not with --scale {args.scale}")
    if args.median_from and not args.neuron:
        ap.error("--median-from centres the neurons' colours: give --neuron LAYER:INDEX too")
    # an option that would change nothing is refused, not ignored (as --around's above)
    if args.scale is not None and not args.neuron:
        ap.error(f"--scale {args.scale} colours the neurons' h and c: give --neuron LAYER:INDEX too")
    if args.expectancy_floor is NOT_GIVEN:
        args.expectancy_floor = DEFAULT_EXPECTANCY_FLOOR
    elif not args.expectancy:
        ap.error("--expectancy-floor sets the expectancy's colour scale: give --expectancy too")
    if args.headings and args.start is not None:
        ap.error(f"--headings lets a chosen passage hold section headings: not with --start {args.start}, which "
                 "gives the passage")
    if args.headings and not args.neuron and not args.group:
        ap.error("--headings lets the passage a --neuron or --group chooses hold section headings: give one (with "
                 "--expectancy alone the text's start is drawn)")
    refusal = around_refusal(args.start, args.around, bool(args.neuron), bool(args.group and args.ablation),
                             bool(args.ablation))
    if refusal:  # options only: a usage error, as the others above
        ap.error(refusal)
    args.scale = args.scale or DEFAULT_SCALE
    try:
        inputs = (args.activations, args.ablation, args.median_from)
        check_inputs(inputs)
        check_kinds([(args.activations, "ACTIVATIONS", "activations"), (args.ablation, "--ablation", "ablation"),
                     (args.median_from, "--median-from", "activations")])
        check_output(args.output, "--output", inputs=inputs)
        refuse_pipeline_figure(args.output, "--output")
        neurons = [parse_neuron(s) for s in args.neuron]
        groups = [parse_group(s) for s in args.group]
        given_once("--neuron", neurons)
        given_once("--group", groups)
        with open_activations(args.activations) as f, contextlib.ExitStack() as other:
            whole, split = int(f.attrs["n_tokens"]), str(f.attrs.get("split", ""))
            own = split == "file"  # lstmscope-dump's
            default_passage = own and not asked and args.start is None  # a text of one's own, its part not chosen
            if default_passage and drawn_whole(split, whole):
                args.tokens = whole  # a paragraph of one's own: all of it (the one passage that long), not 80 words
            median_from = median_text = None
            if args.median_from:
                median_from = other.enter_context(open_activations(args.median_from))
                check_median_from(f, median_from)
                median_text = str(median_from.attrs["text"])
            blocks = heatmap_blocks(f, neurons, args.expectancy, args.start, args.tokens, args.around, args.scale,
                                    args.ablation, groups, args.headings, args.expectancy_floor, median_from,
                                    median_text)
            title = f"{f.attrs['model']}, text {f.attrs['text']}"
            drawn = blocks.stop - blocks.begin
        if neurons and args.scale == "median" and not args.median_from and own:
            short_text_note(PROG, whole)
        if default_passage and drawn < whole:
            print(f"{PROG}: note: tokens {blocks.begin}-{blocks.stop - 1} of this text's 0-{whole - 1} drawn (--start "
                  "and --passage choose another part)", file=sys.stderr)
        if (asked or args.start is not None) and drawn < args.tokens:
            print(f"{PROG}: note: the passage ends with the text: {drawn} of --passage {args.tokens} words drawn",
                  file=sys.stderr)
        with stopped_by_sigterm(), writing("--output", args.output):
            draw_blocks_to(blocks, args.output, dpi=args.dpi, max_chars=args.width, suptitle=title)
    except (ActivationsError, ValueError) as exc:
        return failed(PROG, exc)
    except OSError as exc:  # a read (the writes are in writing()): HDF5's errors name no file
        return failed(PROG, unreadable((args.activations, args.ablation, args.median_from), exc))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM while drawing: the temporary file is already removed
        print(f"{PROG}: stopped; {args.output} not written", file=sys.stderr)
        return stop_status(exc)
    return say(PROG, args.output)


if __name__ == "__main__":
    sys.exit(main())

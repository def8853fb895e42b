"""``lstmscope-ablate``: remove any neurons of a model and see what it loses on an analysis text.

The pipeline removes the top-KL neurons and random ones; this command removes the ones you
pick (e.g. a neuron you found in the explorer or in ``neuron_tracking.csv``), each one at a
time and, with ``--together``, all at once, and prints per ablation the perplexity with and
without, its change, and the words the neuron(s) helped and hindered most. A removed unit's h
is held at its mean over the tokens read (``--method zero``: at 0), as the pipeline does; with
``--max-tokens 6000`` (the pipeline's ablation.max_tokens) a removal's numbers are its table's::

    lstmscope-ablate results/models/d0.0_r0/model.pt results/activations/d0.0_r0/test.h5 -n 2:50 -n 2:14 --together --max-tokens 6000
    lstmscope-ablate results/models/d0.0_r0/model.pt results/activations/d0.0_r0/test.h5 -n 2:50 --max-tokens 6000 --heatmap e.png -o t.csv

Neurons are ``LAYER:INDEX`` (layers from 1, indices from 0, as in the tables). The activations
file gives the text and must have been dumped from the checkpoint. ``--heatmap`` draws each
ablation's effect on every word (log p intact - log p without, in nats) over the passage where
the first one's effect is largest, outside the section headings, their empty lines and the 20
tokens after each (``--headings``: anywhere).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import textwrap
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .ablation import (METHODS, check_dumped_from, intact_log_probabilities, load_model_and_text, model_without,
                       text_log_probabilities, unit_means)
from .ablation_file import AblationError
from .ablation_table import BLOCKS, INTERVAL, effect_summary
from .activations_file import ActivationsError, open_activations
from .atomic import atomic_path, table_record
from .cli import (add_device_option, check_checkpoint_file, check_inputs, check_kinds, check_output, check_threads,
                  command_device, command_parser, dashed_values, failed, file_name, refuse_others_table,
                  refuse_pipeline_figure, say, unreadable, writing)
from .heatmap_cli import MAX_TOKENS, SHORT_TEXT, WHOLE_OWN_TEXT, drawn_whole, given_once, parse_neuron
from .joblog import stop_status, stopped_by_sigterm

PROG = "lstmscope-ablate"
ORDER = ("the arguments are CHECKPOINT ACTIVATIONS (results/models/<model>/model.pt "
         "results/activations/<model>/<text>.h5)")
COLUMNS = ["model", "text", "tokens", "method", "neurons", "perplexity", "intact_perplexity",
           "perplexity_change_pct", *INTERVAL, "mean_effect", "helped_fraction", "words_helped", "words_hindered"]


DEFAULT_PASSAGE = 80  # tokens in the --heatmap passage


def check_units(units: Sequence[tuple[int, int]], layers: int, hidden: int, checkpoint: str) -> None:
    """Every (layer, neuron) must exist in the model; the error names the checkpoint and what exists."""
    for layer, neuron in units:
        if not 1 <= layer <= layers:
            raise AblationError(f"{checkpoint}: layer {layer} does not exist; the model has layers 1..{layers}")
        if not 0 <= neuron < hidden:
            raise AblationError(f"{checkpoint}: neuron {neuron} does not exist in layer {layer}; "
                                f"it has neurons 0..{hidden - 1}")


def ablate(checkpoint: str, activations: str, specs: Sequence[str], together: bool = False,
           max_tokens: int | None = None, min_count: int = 3, top_words: int = 6, device: str = "cpu",
           method: str = "mean", hold_from: str | None = None) -> tuple[pd.DataFrame, list[str], list[np.ndarray]]:
    """The table of the ablations, the words of the text and each ablation's per-word effect; each unit held at its
    mean h over the tokens read (``method`` mean; over every token of the activations file ``hold_from`` where
    given, another text of the same checkpoint) or at 0 (zero); the model runs on ``device`` (``--device``)."""
    if method not in METHODS:  # (the command line's choices; a library caller's value would hold units at 0)
        raise ValueError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if hold_from is not None and method != "mean":
        raise ValueError(f"--hold-from {hold_from}: the means it gives are for --method mean, not {method}")
    units = [parse_neuron(s) for s in specs]
    if not units:
        raise ValueError("nothing to remove: give --neuron LAYER:INDEX (repeatable)")
    given_once("--neuron", units)
    check_checkpoint_file(checkpoint, ORDER)
    dev = command_device(device)
    mt = load_model_and_text(checkpoint, activations, max_tokens, key="--max-tokens")
    mt.model = mt.model.to(dev)
    check_units(units, mt.model.config.layers, mt.model.config.hidden_size, checkpoint)
    intact = intact_log_probabilities(mt, activations, checkpoint)
    layers = sorted({layer for layer, _ in units})
    means = None
    if hold_from is not None:  # a longer text's means, over all of its tokens (the pipeline's: over those it reads)
        with open_activations(hold_from) as f:
            check_dumped_from(f, mt.checkpoint_sha256, checkpoint, f"--hold-from {hold_from}",
                              why=": its means are another model's")
            n = int(f.attrs["n_tokens"])
        means = unit_means(hold_from, layers, n)
    elif method == "mean":
        means = unit_means(activations, layers, len(mt.ids))
    groups = [[u] for u in units] + ([units] if together and len(units) > 1 else [])
    rows, effects = [], []
    for group in groups:
        ablated = text_log_probabilities(model_without(mt.model, group, means), mt.ids)
        effects.append(intact - ablated)
        rows.append({"model": str(mt.attrs["model"]), "text": str(mt.attrs["text"]), "tokens": len(mt.ids),
                     "method": method,  # a table of units held at 0 would read as one of units held at their mean
                     "neurons": " ".join(f"{layer}:{j}" for layer, j in group),
                     **effect_summary(mt.words, intact, ablated, min_count, top_words)})
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs["checkpoint_sha256"] = mt.checkpoint_sha256  # hashed once, when the checkpoint was loaded
    return table, mt.words, effects


def _file_id(path: str) -> tuple[int, int] | None:
    """The file at ``path`` as the system tells files apart (device, inode); None where there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def effect_blocks(table: pd.DataFrame, words: Sequence[str], effects: Sequence[np.ndarray], tokens: int,
                  headings: bool = False) -> list:
    """One heatmap block per ablation, all over the passage where the first one's effect is largest (outside the
    section headings and the tokens after them unless ``headings``)."""
    from .ablation_figures import effect_block, effect_passage
    from .heatmap import shown, symmetric_norm
    from .wikitext import passage_avoid

    start, stop = effect_passage(effects[0], tokens, passage_avoid(words, "active" if headings else "prose"))
    # one scale for every block, as the pipeline's ablation heatmap: a neuron that matters little stays pale beside
    # one that matters much
    norm = symmetric_norm(np.concatenate([e[start:stop] for e in effects]))
    return [effect_block(f"without {row.neurons}: perplexity {shown(row.perplexity_change_pct, '+.2f')}\u00a0%", words,
                         e, start, stop, norm) for row, e in zip(table.itertuples(), effects)]


# where a word list (ablation_table.word_effects: "w (n× m = s); …") parts between its entries: a "; " before the
# next entry's word and its count, not every "; " (";" is a word of WikiText, listed as "; (16× …)")
ENTRY_BREAK = re.compile("; (?=\\S+ \\(\\d+\u00d7 )")


def entries_wrapped(entries: str, first: str, indent: int, width: int) -> list[str]:
    """A word list ("w (n× m = s); …") after ``first``, broken between its entries into lines of at most ``width``
    characters with the ";" that ends a broken line (an entry longer than that on a line of its own), the later
    lines indented by ``indent``."""
    lines, line = [], first
    for k, entry in enumerate(ENTRY_BREAK.split(entries)):
        piece = entry if k == 0 else "; " + entry
        if k and len(line) + len(piece) > width - 1:  # (the ";" the line would end with had it to break here)
            lines.append(line + ";")
            line = " " * indent + entry
        else:
            line += piece
    return lines + [line]


def held_phrase(method: str, hold_from: str | None) -> str:
    """What a removed unit's h was held at, as the printout and the --heatmap title say it: the pipeline's phrase
    (``ablation_figures.removal_phrase``), or the --hold-from file's mean."""
    from .ablation_figures import removal_phrase

    return f"h held at its mean over every token of {hold_from}" if hold_from else removal_phrase(method)


def percent(value: float) -> str:
    """A change in %: two decimals, fewer digits where it is below 0.1 in size (a neuron that matters little)."""
    return f"{value:+.2f}" if abs(value) >= 0.1 else f"{value:+.2g}"


def has_word_lists(table: pd.DataFrame) -> bool:
    """Whether any removal of ``table`` has a word helped or hindered listed (where none has, the command notes
    why; where one has, every removal prints both lists)."""
    return bool(table[["words_helped", "words_hindered"]].fillna("").astype(str).to_numpy().any())


def report(table: pd.DataFrame, hold_from: str | None = None, width: int = 100) -> str:
    """What the command prints: the text, what was read and how units were removed, then per ablation its
    perplexity, change (95 % interval), mean effect and the words it helped and hindered most, every line within
    ``width`` characters but for a word longer than that (a path): word lists broken between entries, the neurons
    of a removal too many for one line listed above its numbers (the table's one row per ablation is hundreds
    wide: ``-o``)."""
    first = table.iloc[0]
    out = [f"{first['model']}, text {first['text']}: {int(first['tokens'])} tokens read, intact perplexity "
           f"{first['intact_perplexity']:.1f}", f"a removed unit's {held_phrase(str(first['method']), hold_from)}"]
    # where any removal has words listed, every removal has both lines: an empty one says "none" (no word occurring
    # often enough was helped, or hindered), not a line left out (where none has any, the command notes why)
    listed = has_word_lists(table)
    for row in table.itertuples():
        low, high = (getattr(row, c) for c in INTERVAL)
        interval = "no 95 % interval" if pd.isna(low) else f"95 % interval {percent(low)} to {percent(high)} %"
        change = f"perplexity {row.perplexity:.1f}, {percent(row.perplexity_change_pct)} % ({interval})"
        heading = f"without {row.neurons}: {change}"
        if " " in row.neurons and len(heading) > width:  # neurons removed together: listed, the numbers below
            heading = "\n".join(textwrap.wrap(f"without {row.neurons}:", width, subsequent_indent=" " * 8,
                                               break_long_words=False, break_on_hyphens=False) + [f"  {change}"])
        out += ["", heading,
                f"  mean effect {row.mean_effect:+.3g} nats a word; {100 * row.helped_fraction:.1f} % of the words "
                f"helped (less likely without)"]
        for label, words in (("helped most:  ", row.words_helped), ("hindered most:", row.words_hindered)):
            if listed:
                out += entries_wrapped(words if isinstance(words, str) and words else "none", f"  {label} ",
                                       len(label) + 3, width)
    if listed:
        out += ["", "(a word: occurrences × mean effect = sum, in nats; effect: log p intact - log p without)"]
    return "\n".join(fitted(line, width) for line in "\n".join(out).split("\n"))


def fitted(line: str, width: int) -> str:
    """``line`` broken between words into lines of at most ``width`` characters (a word longer stays whole), the
    later ones indented two more than it."""
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    return "\n".join(textwrap.wrap(line.strip(), width, initial_indent=" " * indent,
                                   subsequent_indent=" " * (indent + 2), break_long_words=False,
                                   break_on_hyphens=False))


def build_parser() -> argparse.ArgumentParser:
    ap = command_parser(PROG, "Remove any neurons of a model and show what it loses on "
                              "the text of one of its activations files.", __doc__)
    ap.add_argument("checkpoint", type=file_name, help="a model, results/models/<model>/model.pt")
    ap.add_argument("activations", type=file_name,
                    help="its activations file, results/activations/<model>/<text>.h5 (the text)")
    ap.add_argument("-n", "--neuron", action="append", default=[], metavar="LAYER:INDEX",
                    help="a neuron to remove (repeatable; each is removed on its own)")
    ap.add_argument("--together", action="store_true", help="also remove all the given neurons at once")
    ap.add_argument("--method", choices=METHODS, default="mean",
                    help="hold a removed unit's h at its mean over the tokens read (default, as ablation.method) "
                         "or at 0")
    ap.add_argument("--hold-from", type=file_name, metavar="ACTIVATIONS", default=None,
                    help="hold a removed unit at its mean h over every token of this activations file of the same "
                         "checkpoint (e.g. the pipeline's results/activations/<model>/test.h5) instead of over the "
                         "tokens read: for a short text of one's own")
    ap.add_argument("--max-tokens", "--tokens", dest="tokens", type=int, default=None, metavar="TOKENS",
                    help="read only the text's first TOKENS tokens (default: all; the pipeline reads "
                         "ablation.max_tokens of them, 6000 in config.yaml; --tokens, its name in earlier releases, "
                         "is the same option)")
    ap.add_argument("--top-words", type=int, default=6, help="words listed as most helped / hindered (default 6)")
    ap.add_argument("--min-count", type=int, default=3, help="occurrences a listed word needs (default 3)")
    ap.add_argument("-o", "--output", type=file_name, help="also write the table as CSV (a name ending in .csv)")
    ap.add_argument("--heatmap", type=file_name, help="draw each ablation's effect on the words (.png, .svg or .pdf)")
    ap.add_argument("--passage", type=int, default=None,
                    help=f"tokens in the --heatmap passage (default {DEFAULT_PASSAGE}, and all of a text of one's "
                         f"own of at most {WHOLE_OWN_TEXT}; at most {MAX_TOKENS})")
    ap.add_argument("--headings", action="store_true",
                    help="let the --heatmap passage hold section headings (default: the passage outside them, "
                         "their empty lines and the 20 tokens after each)")
    add_device_option(ap)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(dashed_values(argv, ("-n", "--neuron")))  # -n -1:5: the layer's own error
    if args.heatmap:
        from .figures import figure_format

        try:
            figure_format(args.heatmap)
        except ValueError as exc:
            ap.error(f"--heatmap {exc}")
    for option, value in (("--top-words", args.top_words), ("--min-count", args.min_count),
                          ("--passage", args.passage)):
        if value is not None and value < 1:
            ap.error(f"{option} {value}: must be >= 1")
    if (args.passage is not None or args.headings) and not args.heatmap:
        ap.error(f"{'--passage' if args.passage is not None else '--headings'} shapes the --heatmap figure: give "
                 "--heatmap FILE too")
    if args.passage is not None and args.passage > MAX_TOKENS:
        ap.error(f"--passage {args.passage}: at most {MAX_TOKENS} words make a readable figure")
    check_threads(ap, args.threads)
    if args.output and not args.output.lower().endswith(".csv"):  # the figure is --heatmap's (lstmscope-heatmap's -o)
        ap.error(f"--output {args.output}: the table is written as CSV, to a name ending in .csv (the figure: "
                 "--heatmap FILE)")
    if args.together and len(args.neuron) < 2:
        ap.error("--together removes the -n neurons all at once: give at least two")
    passage = DEFAULT_PASSAGE if args.passage is None else args.passage
    if args.tokens is not None and args.tokens < 2:
        ap.error(f"--max-tokens {args.tokens}: must be at least 2 (leave it out for the whole text)")
    torch.set_num_threads(args.threads)
    try:
        inputs = (args.checkpoint, args.activations, *([args.hold_from] if args.hold_from else []))
        check_inputs(inputs)
        check_checkpoint_file(args.checkpoint, ORDER)
        check_kinds([(args.checkpoint, "CHECKPOINT", "checkpoint"), (args.activations, "ACTIVATIONS", "activations"),
                     (args.hold_from, "--hold-from", "activations")])
        for option, path in (("--output", args.output), ("--heatmap", args.heatmap)):
            if path:
                check_output(path, option, inputs=inputs)
        if args.output:
            refuse_others_table(args.output, "--output", PROG)
        if args.heatmap:
            refuse_pipeline_figure(args.heatmap, "--heatmap")
        with stopped_by_sigterm():
            table, words, effects = ablate(args.checkpoint, args.activations, args.neuron, args.together, args.tokens,
                                           args.min_count, args.top_words, args.device, args.method, args.hold_from)
            if args.output:  # the inputs' SHA-256 for the table's record, hashed before any output is written
                from .provenance import models_of, record_table, sha256_file

                hashed = {args.checkpoint: table.attrs["checkpoint_sha256"]}
                sums = {str(p): hashed.get(p) or sha256_file(p) for p in inputs}
            replaced = _file_id(args.output) if args.output else None  # the table there before, if any
            try:
                with contextlib.ExitStack() as table_file:
                    # the table under a temporary name until the figure is drawn: one that fails leaves neither
                    if args.output:
                        table_file.enter_context(writing("--output", args.output))
                        table.to_csv(table_file.enter_context(atomic_path(args.output)), index=False,
                                     float_format="%.6g")
                    if args.heatmap:
                        from .ablation_figures import EFFECT_CAPTION
                        from .heatmap import draw_blocks_to

                        title = (f"{table['model'].iloc[0]}, text {table['text'].iloc[0]}: {EFFECT_CAPTION}\n"
                                 f"neurons removed: {held_phrase(args.method, args.hold_from)}")
                        if args.passage is None:  # a short text of one's own whole, as lstmscope-heatmap draws it
                            with open_activations(args.activations) as f:
                                if drawn_whole(str(f.attrs.get("split", "")), len(words)):
                                    passage = len(words)
                        with writing("--heatmap", args.heatmap):
                            draw_blocks_to(effect_blocks(table, words, effects, passage, args.headings),
                                           args.heatmap, suptitle=title)
                if args.output:  # a CSV has no place for provenance: beside it, as beside the pipeline's tables
                    with writing("--output", args.output):
                        record_table(args.output, command=PROG, inputs=sums, models=models_of(inputs),
                                     settings={"neurons": args.neuron, "together": args.together,
                                               "method": args.method, "hold_from": args.hold_from,
                                               "tokens": args.tokens, "top_words": args.top_words,
                                               "min_count": args.min_count, "device": args.device,
                                               "threads": args.threads})
            except BaseException:
                # a table that took its name without its record (a full disk, a Ctrl-C after its rename) is not
                # finished: it goes, with whatever record was written; one that never took its name changed nothing
                if args.output and _file_id(args.output) not in (None, replaced):
                    for path in (args.output, table_record(args.output)):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
                raise
    except (AblationError, ActivationsError, ValueError, RuntimeError) as exc:  # RuntimeError: CUDA out of memory
        return failed(PROG, exc)
    except OSError as exc:  # a read (the writes are in writing()): HDF5's errors name no file
        return failed(PROG, unreadable((args.activations,), exc))  # torch reads the checkpoint
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: an output being written is already removed
        print(f"{PROG}: stopped; an output not finished is removed", file=sys.stderr)
        return stop_status(exc)
    read = int(table["tokens"].iloc[0])
    if args.tokens is not None and read < args.tokens:
        print(f"{PROG}: note: the text has {read} tokens: all of them read, not --max-tokens {args.tokens}", file=sys.stderr)
    if args.heatmap and args.passage is not None and read < args.passage:
        print(f"{PROG}: note: {read} tokens read: the --heatmap passage holds all of them, not --passage "
              f"{args.passage}", file=sys.stderr)
    if args.method == "mean" and args.hold_from is None and read < SHORT_TEXT:
        print(f"{PROG}: note: each removed unit is held at its mean over the {read} tokens read only; --hold-from "
              "results/activations/<model>/test.h5 holds it at its mean over a pipeline text", file=sys.stderr)
    if table[INTERVAL].isna().any(axis=None):
        print(f"{PROG}: note: no 95 % interval of the change: it needs at least {2 * BLOCKS + 1} words read",
              file=sys.stderr)
    if not has_word_lists(table):
        print(f"{PROG}: note: no word lists: no word occurring --min-count={args.min_count} or more times among the "
              "words read changed in probability", file=sys.stderr)
    return say(PROG, report(table, args.hold_from, max(60, shutil.get_terminal_size((100, 24)).columns)))


if __name__ == "__main__":
    sys.exit(main())

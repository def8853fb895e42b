"""``lstmscope-explorer``: the neuron explorer page of any activations file.

The pipeline writes the page for the models and texts of ``neuron_explorer.dropouts`` and ``.texts``;
this command writes it for any other activations file -- another model's, or a text of your own
written by ``lstmscope-dump``::

    lstmscope-explorer results/activations/d0.2_r0/test.h5 -o d0.2_r0_test.html
    lstmscope-dump results/models/d0.0_r0/model.pt probe.txt -o probe.h5
    lstmscope-explorer probe.h5 --neurons all --median-from results/activations/d0.0_r0/test.h5 -o probe.html

The neurons are offered by their rank in the model's divergence table: for a file of the pipeline
(results/activations/<model>/<text>.h5) that text's (results/neurons/<model>/<text>/divergence.csv);
for a text of your own the model's ranking on a pipeline text (``--ranked-on``, default ``test``:
results/neurons/<model>/test/divergence.csv, in the results folder the file lies in, else in the one of the
checkpoint it was dumped from, else in the one the command runs in); or any table of the model given with ``--divergence``. ``--ablation`` (a file of the pipeline, results/ablation/<model>/<text>.h5, of
the same model and text) adds the neurons removed there and the effect of each removal.
``--median-from`` centres the median scale on each neuron's median over another activations file of
the same checkpoint, as ``lstmscope-heatmap --median-from``: a short text's own medians say little.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .ablation_file import AblationError
from .activations_file import ActivationsError, open_activations
from .checked_files import refuse_rows
from .cli import (add_expectancy_floor_option, check_inputs, check_kinds, check_output, command_parser, failed,
                  file_name, refuse_pipeline_page, say, writing)
from .divergence import ranking_measure, read_divergence
from .heatmap import DEFAULT_SCALE, SCALES
from .heatmap_cli import MAX_TOKENS, check_median_from, short_text_note
from .histogram import HistogramError
from .joblog import stop_status, stopped_by_sigterm
from .neuron_explorer import build_neuron_explorer

PROG = "lstmscope-explorer"


def divergence_candidates(activations: str, model: str, text: str, split: str, ranked_on: str | None,
                          checkpoint: str = "") -> list[Path]:
    """Where the divergence table that ranks the neurons of ``activations`` may lie, in the order looked at:
    results/neurons/<model>/<TEXT>/divergence.csv with TEXT = ``ranked_on``, else the file's own text (a text of
    one's own, ``split`` file: ``test``), in the results folder the file lies in (results/activations/<model>/), in
    the one of the checkpoint it was dumped from (``checkpoint``, as the file records it, where it is a path to
    results/models/<model>/model.pt: a text of one's own dumped anywhere), and in ./results."""
    folders = []
    path = Path(os.path.abspath(activations))  # not resolved: a linked results folder stays the project's
    if path.parent.name == model and path.parent.parent.name == "activations":
        folders.append(path.parent.parent.parent)
    if checkpoint:
        model_file = Path(checkpoint)
        if model_file.is_absolute() and model_file.parent.name == model and model_file.parent.parent.name == "models":
            folders.append(model_file.parent.parent.parent)
    folders.append(Path("results"))
    ranked = ranked_on or ("test" if split == "file" else text)
    out: list[Path] = []
    for folder in folders:
        table = folder / "neurons" / model / ranked / "divergence.csv"
        if os.path.abspath(table) not in map(os.path.abspath, out):
            out.append(table)
    return out


def default_divergence(activations: str, model: str, text: str, split: str, ranked_on: str | None,
                       checkpoint: str = "") -> Path:
    """The first of :func:`divergence_candidates` that exists; where none does, an error naming each."""
    candidates = divergence_candidates(activations, model, text, split, ranked_on, checkpoint)
    for table in candidates:
        if table.is_file():
            return table
    looked = str(candidates[0]) if len(candidates) == 1 else "neither " + " nor ".join(str(t) for t in candidates)
    ranked = sorted({t.parent.name for c in candidates for t in c.parent.parent.glob("*/divergence.csv")})
    there = f": {', '.join(ranked)}" if ranked else ""  # the texts those folders hold a ranking of
    raise ValueError(f"{looked}: divergence table not found; give the ranking of model {model}'s neurons with "
                     f"--divergence (results/neurons/<model>/<text>/divergence.csv) or --ranked-on TEXT (a text "
                     f"the pipeline ranked{there}), or run the command in the project's folder")


def recorded_checkpoint(provenance: str) -> str:
    """The checkpoint an activations file records it was dumped from (its provenance's ``checkpoint``), or ""."""
    try:
        record = json.loads(provenance)
    except (TypeError, ValueError):
        return ""
    return str(record.get("checkpoint", "")) if isinstance(record, dict) else ""


def text_name(value: str) -> str:
    """argparse's type of ``--ranked-on``: an empty name (an unset shell variable) is a usage error, not the
    default taken."""
    if not value:
        raise argparse.ArgumentTypeError("an empty text name")
    return value


def neuron_count(value: str) -> int | None:
    """``--neurons``: a count >= 1, or ``all`` (every live neuron)."""
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a number of neurons, or all") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1 (or all)")
    return n


def check_divergence_values(path: str) -> None:
    """The divergence table the command ranks by (given, or found beside the file) holds only values a divergence
    table can have (``read_divergence``, which every job reading one calls, checks a table's shape; this, the
    command's alone, its values, which a table edited by hand can break): KL divergences of 0 or more, ``kl_sum`` =
    ``kl_pq`` + ``kl_qp``, fractions from 0 to 1, a dropout below 1, spreads and counts of 0 or more, ``min`` <=
    ``mean`` <= ``max``, and the live neurons of a layer and state ranked by the table's measure, largest first. A
    table that breaks one would put a neuron's impossible numbers, or another neuron than the ranking's, on the
    page."""
    table = read_divergence(path)

    def refuse(bad, col: str, must: str) -> None:
        refuse_rows(table, bad, col, must, path, HistogramError)

    for col in ("kl_pq", "kl_qp", "kl_sum"):
        refuse(table[col] < 0, col, "KL divergences of 0 or more")
    # (the tables hold 8 significant digits: their sum may differ from the rounded kl_sum in the 8th)
    refuse(~np.isclose(table["kl_sum"], table["kl_pq"] + table["kl_qp"], rtol=1e-6, atol=1e-9), "kl_sum",
           "kl_pq + kl_qp")
    refuse(~table["near_zero_fraction"].between(0, 1), "near_zero_fraction", "fractions from 0 to 1")
    refuse(~((table["dropout"] >= 0) & (table["dropout"] < 1)), "dropout", "a dropout from 0 to below 1")
    for col in ("std", "mean_abs", "underflow", "overflow"):
        refuse(table[col] < 0, col, "values of 0 or more")
    refuse(table["min"] > table["max"], "min", "values at most the line's max")
    slack = 1e-6 * np.maximum(1.0, np.maximum(table["min"].abs(), table["max"].abs()))  # a mean's rounding
    refuse((table["mean"] < table["min"] - slack) | (table["mean"] > table["max"] + slack), "mean",
           "values between the line's min and max")
    measure = ranking_measure(table)
    live = table[~table["dead"]].sort_values(["layer", "state", "rank"], kind="stable")
    value = live[measure].to_numpy()
    same_group = (live["layer"].to_numpy()[1:] == live["layer"].to_numpy()[:-1]) & (
        live["state"].to_numpy()[1:] == live["state"].to_numpy()[:-1])
    rises = same_group & (value[1:] > value[:-1] + 1e-12 * np.maximum(1.0, np.abs(value[:-1])))
    if rises.any():
        i = int(np.argmax(rises))
        above, below = live.iloc[i], live.iloc[i + 1]
        raise HistogramError(f"{path}: line {int(below.name) + 2}: layer {below['layer']} {below['state']} rank "
                             f"{below['rank']} has {measure} {below[measure]:g}, more than rank {above['rank']}'s "
                             f"{above[measure]:g}; the ranks follow {measure}, the largest first")


def build_parser() -> argparse.ArgumentParser:
    ap = command_parser(PROG, "Write the neuron explorer page (one offline HTML file) of any activations file.",
                        __doc__)
    ap.add_argument("activations", type=file_name, help="an activations file: results/activations/<model>/<text>.h5, or "
                                        "lstmscope-dump's")
    ap.add_argument("-o", "--output", type=file_name, required=True, help="the page to write (.html)")
    ap.add_argument("--divergence", type=file_name, default=None,
                    help="the divergence table that ranks the model's neurons (default: see below)")
    ap.add_argument("--ranked-on", type=text_name, default=None, metavar="TEXT",
                    help="the pipeline's text whose ranking of the neurons is used (default: the file's own text; "
                         "for a text of your own, test)")
    ap.add_argument("--neurons", type=neuron_count, default=8, metavar="N|all",
                    help="top-ranked neurons offered per layer and state, or all (every live one) (default 8)")
    ap.add_argument("-a", "--ablation", type=file_name, default=None,
                    help="the ablation file of the same model and text (results/ablation/<model>/<text>.h5): offer "
                         "its removals too")
    ap.add_argument("--passage", type=int, default=80,
                    help=f"tokens in the passage the page's button jumps to (default 80, at most {MAX_TOKENS})")
    ap.add_argument("--headings", action="store_true",
                    help="let that passage hold section headings (default: the passage outside them, their empty lines "
                         "and the 20 tokens after each)")
    ap.add_argument("--scale", choices=SCALES, default=DEFAULT_SCALE,
                    help="the h/c colour scale the page opens on, as heatmap.scale: median = centred on the neuron's "
                         "median over the text, symmetric = on 0, range = min to max (default "
                         f"{DEFAULT_SCALE}; the page's menu changes it)")
    ap.add_argument("--median-from", type=file_name, default=None, metavar="ACTIVATIONS",
                    help="centre the median scale on each neuron's median over another activations file of the same "
                         "checkpoint (e.g. results/activations/<model>/test.h5) instead of over this text: for a "
                         "short text of one's own, as lstmscope-heatmap --median-from")
    add_expectancy_floor_option(ap, "the text's smallest p")
    ap.add_argument("--title", default=None, help="the page's title (default: lstmscope neurons · MODEL · TEXT)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.output.lower().endswith((".html", ".htm")):
        ap.error(f"--output {args.output}: a web page, ending in .html (or .htm)")
    if args.passage < 1:
        ap.error(f"--passage {args.passage}: must be >= 1")
    if args.passage > MAX_TOKENS:  # as heatmap.passage_tokens, whose passage the pipeline's page jumps to
        ap.error(f"--passage {args.passage}: at most {MAX_TOKENS} tokens")
    if args.title is not None and not args.title.strip():
        ap.error("--title: an empty title (leave the option out for the default)")
    try:
        check_inputs((args.activations, args.divergence, args.ablation, args.median_from))
        check_kinds([(args.activations, "ACTIVATIONS", "activations"), (args.divergence, "--divergence", "csv"),
                     (args.ablation, "--ablation", "ablation"), (args.median_from, "--median-from", "activations")])
        check_output(args.output, "--output", inputs=(args.activations, args.divergence, args.ablation,
                                                      args.median_from))
        refuse_pipeline_page(args.output, "--output")
        if args.divergence and args.ranked_on:
            raise ValueError(f"--divergence {args.divergence} and --ranked-on {args.ranked_on} both choose the "
                             "ranking: give one of them")
        with open_activations(args.activations) as f:
            model, text, split = str(f.attrs["model"]), str(f.attrs["text"]), str(f.attrs.get("split", ""))
            text_file = str(f.attrs.get("text_file", ""))
            checkpoint = recorded_checkpoint(f.attrs.get("provenance", ""))
            hidden = int(f.attrs["hidden_size"])
            whole = int(f.attrs["n_tokens"])
            if args.median_from:
                with open_activations(args.median_from) as other:
                    check_median_from(f, other)
        if args.neurons is not None and args.neurons > hidden:  # as neuron_explorer.neurons in the config
            raise ValueError(f"--neurons {args.neurons}: more than the {hidden} neurons of a layer of {model}; "
                             "give all to offer every live neuron")
        if args.divergence and not Path(args.divergence).is_file():
            raise ValueError(f"--divergence {args.divergence}: divergence table not found")
        divergence = args.divergence or str(default_divergence(args.activations, model, text, split, args.ranked_on,
                                                               checkpoint))
        check_divergence_values(divergence)
        own = f" (text file {Path(text_file).name})" if split == "file" and text_file else ""
        title = args.title or f"lstmscope neurons · {model} · {text}{own}"
        with stopped_by_sigterm(), writing("--output", args.output,
                                           reading=(args.activations, args.ablation, args.median_from)):
            size = build_neuron_explorer(args.activations, divergence, args.output, args.neurons, args.passage,
                                         title, ablation_path=args.ablation,
                                         passage="active" if args.headings else "prose", scale=args.scale,
                                         expectancy_floor=args.expectancy_floor, median_from=args.median_from)
    except (ActivationsError, AblationError, HistogramError, ValueError) as exc:
        return failed(PROG, exc)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM while building: the temporary file is already removed
        print(f"{PROG}: stopped; {args.output} not written", file=sys.stderr)
        return stop_status(exc)
    if split == "file" and not args.median_from:  # as lstmscope-heatmap's note
        short_text_note(PROG, whole)
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    return say(PROG, f"{args.output}: {shown}, neurons ranked by {divergence}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

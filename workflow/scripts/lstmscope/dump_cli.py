"""``lstmscope-dump``: run a trained model over a text of your own and write its activations file.

The pipeline dumps slices of WikiText-2's splits; this command dumps any text file -- probe
sentences, a minimal pair, a paragraph you wrote -- so that ``lstmscope-heatmap`` and
``lstmscope-ablate`` work on it like on the pipeline's files::

    lstmscope-dump results/models/d0.0_r0/model.pt probe.txt -o probe.h5
    lstmscope-heatmap probe.h5 --neuron 2:50 --expectancy --median-from results/activations/d0.0_r0/test.h5 -o probe.png

The text is read as WikiText-2 is (and as the model was trained): each line is split at spaces and ends
with ``<eos>``, so write punctuation apart from words (``The film was released in 1998 .``), keep
WikiText's cases and its ``@-@`` / ``@,@`` / ``@.@`` inside hyphenated words and numbers. A word outside
the model's vocabulary is read as ``<unk>``: the command lists such words, since a misspelt or
differently tokenised word changes what the model sees. The file is the same format as the pipeline's
(``tokens/*``, every layer's ``h`` and ``c``, ``expectancy``, provenance), with ``split`` = ``file`` and the
text file's path and SHA-256 in ``text_file`` / ``text_sha256``.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import h5py

from .activations import DTYPES, TextSpec, dump_activations
from .activations_file import ActivationsError, read_words
from .atomic import atomic_path
from .config import has_controls
from .cli import (KINDS, add_device_option, check_checkpoint_file, check_inputs, check_kinds, check_output,
                  check_threads, command_device, command_parser, failed, file_name, lstmscope_kind, say, writing)
from .joblog import stop_status, stopped_by_sigterm
from .vocabulary import EOS, SPLITS, read_tokens

PROG = "lstmscope-dump"
ORDER = "the arguments are CHECKPOINT TEXT (results/models/<model>/model.pt a text file)"
LISTED = 12  # words outside the vocabulary named in the note


def default_vocabulary(checkpoint: str) -> str:
    """The pipeline's vocabulary beside a checkpoint: results/models/<model>/model.pt -> results/data/vocabulary.json."""
    return str(Path(checkpoint).resolve().parent.parent.parent / "data" / "vocabulary.json")


def remove_nested_leftovers(output: str) -> None:
    """Remove what killed dumps to ``output`` left: :func:`dump_activations` writes this command's own temporary
    file under a temporary name, ``..<name>.tmp<pid>.tmp<pid>.h5``, which ``atomic_path``'s clean-up (of
    ``.<name>.tmp<pid>.h5``) does not match."""
    out = Path(output)
    pattern = re.compile(rf"\.\.{re.escape(out.stem)}\.tmp\d+\.tmp\d+{re.escape(out.suffix)}")
    for old in out.parent.glob(f"..{glob.escape(out.stem)}.tmp*"):
        if pattern.fullmatch(old.name):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def dump_text(checkpoint: str, text_file: str, output: str, vocabulary: str | None = None, name: str | None = None,
              dtype: str = "float32", device: str = "cpu", threads: int = 1) -> dict:
    """Write the activations file of ``text_file`` (atomically); returns the dump's summary plus the words
    outside the vocabulary (``unknown``: word -> count)."""
    check_checkpoint_file(checkpoint, ORDER)
    if vocabulary is None and os.path.isfile(checkpoint) and not os.path.isfile(default_vocabulary(checkpoint)):
        from .model import load_checkpoint  # a damaged or foreign checkpoint says so, not that the vocabulary its
        load_checkpoint(checkpoint)  # folder implies is missing (a copy outside results/, say)
    vocabulary = vocabulary or default_vocabulary(checkpoint)
    for path, what in ((checkpoint, "checkpoint not found"),
                       (vocabulary, "vocabulary not found (give the model's with --vocabulary)"),
                       (text_file, "text file not found")):
        if not os.path.isfile(path):
            raise ActivationsError(f"{path}: {what}")
    with open(text_file, "rb") as fh:
        if fh.read(3) == b"\xef\xbb\xbf":  # a UTF-8 byte-order mark, as some editors write: it joins the first word
            raise ActivationsError(f"{text_file}: begins with a byte-order mark (U+FEFF), which would be read as part "
                                   "of the first word; save the file as UTF-8 without one")
    try:
        words = read_tokens(text_file)
    except UnicodeDecodeError as exc:
        raise ActivationsError(f"{text_file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if any("\0" in w for w in words):  # HDF5 stores no string holding one; checked before the model reads it
        at = Path(text_file).read_bytes().index(b"\0")
        raise ActivationsError(f"{text_file}: holds a NUL character (byte {at}), as UTF-16 text without a byte-order "
                               "mark does; save it as UTF-8 text")
    if all(w == EOS for w in words):
        raise ActivationsError(f"{text_file}: no words to read (the file is empty or holds only blank lines)")
    name = name or Path(text_file).stem
    spec = TextSpec(name=name, split="file", offset=0, tokens=len(words))
    remove_nested_leftovers(output)
    with atomic_path(output) as tmp:
        summary = dump_activations(checkpoint, vocabulary, text_file, spec, tmp, dtype=dtype, device=device,
                                   threads=threads, gpus=1 if device != "cpu" else 0,
                                   progress=sys.stderr.isatty())  # a bar for a person, not in a script's log
        with h5py.File(tmp, "a") as f:
            prov = json.loads(f.attrs["provenance"])
            text_sha = prov["data_sha256"]["file"]  # the dump hashed the text it read (split "file")
            f.attrs["text_file"] = os.path.abspath(text_file)
            f.attrs["text_sha256"] = text_sha
            # the checkpoint as a whole path too: lstmscope-explorer, run elsewhere, finds its results folder
            prov.update(text_file=os.path.abspath(text_file), text_sha256=text_sha,
                        checkpoint=os.path.abspath(checkpoint))
            f.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)
            read = read_words(f)
    summary["unknown"] = Counter(w for w, r in zip(words, read) if w != r)
    return summary


def build_parser() -> argparse.ArgumentParser:
    ap = command_parser(PROG, "Run a trained model over a text file of your own and write "
                              "its activations file (h and c of every layer, the expectancy of every word).", __doc__)
    ap.add_argument("checkpoint", type=file_name, help="a model, results/models/<model>/model.pt")
    ap.add_argument("text", type=file_name, help="a UTF-8 text file, written as WikiText-2 is (see below)")
    ap.add_argument("-o", "--output", type=file_name, required=True, help="the activations file to write (.h5)")
    ap.add_argument("--vocabulary", type=file_name, default=None,
                    help="the model's vocabulary (default: results/data/vocabulary.json beside results/models/)")
    ap.add_argument("--name", default=None, help="the text's name in the file and in titles (default: the file's stem)")
    ap.add_argument("--dtype", choices=DTYPES, default="float32", help="how h and c are stored (default float32)")
    add_device_option(ap)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    return ap


def shortened(word: str, most: int = 40) -> str:
    """A word as a note lists it: at most ``most`` characters (a pasted URL or a line without spaces is one
    "word" of thousands), the rest cut to an ellipsis; a character a terminal would act on or not show (an escape
    sequence's ESC, a backspace, a zero-width space) written as its escape, ``\\x1b``."""
    word = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in word)
    return word if len(word) <= most else word[:most - 1] + "…"


def refuse_pipeline_dump(path: str) -> None:
    """An existing activations file of a pipeline text (split train/valid/test, not "file") is not replaced: the
    pipeline would take it for its dump and rebuild everything after it from another text. Nor is another of
    lstmscope's HDF5 files (an ablation file, histograms: a slip of the name), which no dump could be."""
    if not os.path.isfile(path):
        return
    if not h5py.is_hdf5(path):  # an ordinary file to replace
        return
    try:
        with h5py.File(path, "r", locking=False) as f:  # also while another program holds it open
            split, text = str(f.attrs.get("split", "")), str(f.attrs.get("text", ""))
            found = str(f.attrs.get("format", ""))
    except OSError as exc:
        raise ValueError(f"--output {path}: an HDF5 file that cannot be read ({exc.strerror or 'damaged?'}), so "
                         "possibly a pipeline's activations file: remove it first, or give another file name") from None
    kind = lstmscope_kind(found)
    if kind and kind != "activations":
        raise ValueError(f"--output {path}: {KINDS[kind]} ({found}), not an activations file; this command would "
                         "replace it: give another file name")
    if split in SPLITS:
        raise ValueError(f"--output {path}: an activations file of the pipeline (text {text}, split {split}); this "
                         "command would replace it with another text: give another file name")


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    check_threads(ap, args.threads)
    if args.name is not None and not args.name.strip():
        ap.error("--name: an empty name (leave the option out for the file's stem)")
    if args.name is not None and has_controls(args.name):
        ap.error(f"--name {ascii(args.name)}: holds a line break or another control character")  # drawn in titles
    if not args.output.lower().endswith((".h5", ".hdf5")):
        ap.error(f"--output {args.output}: an HDF5 file, ending in .h5")
    try:
        check_inputs((args.checkpoint, args.text, args.vocabulary))
        check_checkpoint_file(args.checkpoint, ORDER)
        check_kinds([(args.checkpoint, "CHECKPOINT", "checkpoint"), (args.text, "TEXT", "text")])
        check_output(args.output, "--output", inputs=(args.checkpoint, args.text, args.vocabulary))
        refuse_pipeline_dump(args.output)
        command_device(args.device)
        with stopped_by_sigterm(), writing("--output", args.output):
            summary = dump_text(args.checkpoint, args.text, args.output, args.vocabulary, args.name, args.dtype,
                                args.device, args.threads)
    except (ActivationsError, ValueError, RuntimeError) as exc:  # RuntimeError: torch's, e.g. CUDA out of memory
        return failed(PROG, exc)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the temporary file is already removed
        print(f"{PROG}: stopped; {args.output} not written", file=sys.stderr)
        return stop_status(exc)
    unknown = summary["unknown"]
    if unknown:
        listed = ", ".join(f"{shortened(w)} ({n})" if n > 1 else shortened(w) for w, n in unknown.most_common(LISTED))
        more = f" and {len(unknown) - LISTED} more" if len(unknown) > LISTED else ""
        count, words = sum(unknown.values()), len(unknown)
        # "4 words" where each occurs once; "4 occurrences of 3 words" (the count was read as words, 3 listed)
        counted = (f"{count} {'word' if count == 1 else 'words'}" if count == words else
                   f"{count} occurrences of {words} {'word' if words == 1 else 'words'}")
        print(f"{PROG}: note: {counted} outside the model's vocabulary, read as <unk>: {listed}{more}",
              file=sys.stderr)
    return say(PROG, f"{args.output}: {summary['tokens']} tokens, perplexity {summary['perplexity']:.1f}")


if __name__ == "__main__":
    sys.exit(main())

"""Checks shared by the commands (``lstmscope-heatmap``, ``-ablate``, ``-dump``, ``-explorer``): an argument they
could not use is one line naming it, before anything is computed."""
from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from .atomic import table_record
from .colours import DEFAULT_EXPECTANCY_FLOOR, check_expectancy_floor

if TYPE_CHECKING:
    import torch


def command_parser(prog: str, description: str, doc: str) -> argparse.ArgumentParser:
    """A command's parser: ``description`` above the options, ``doc`` (its module's docstring) after its first
    paragraph below them, as written."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=doc.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def dashed_values(argv: Sequence[str] | None, options: Sequence[str]) -> list[str]:
    """The command line (``sys.argv[1:]`` for None) with each value of ``options`` that starts with "-" and a digit
    (``-n -1:5``, a layer below 1) joined to its option (``-n-1:5``, ``--neuron=-1:5``): argparse takes such a value
    for an option of its own and says only "expected one argument", where the command's own check names the layer.
    A long option may be abbreviated, as argparse allows (``--neu -1:5``). Nothing after ``--`` is touched."""
    args = list(sys.argv[1:] if argv is None else argv)
    longs = [o for o in options if o.startswith("--")]

    def takes_value(arg: str) -> bool:
        return arg in options or (arg.startswith("--") and len(arg) > 2 and any(o.startswith(arg) for o in longs))

    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return out + args[i:]
        value = args[i + 1] if i + 1 < len(args) else ""
        if takes_value(arg) and len(value) > 1 and value[0] == "-" and value[1].isdigit():
            out.append(f"{arg}={value}" if arg.startswith("--") else arg + value)
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


DEVICES = ("cpu", "cuda", "auto")


def file_name(value: str) -> str:
    """argparse's type of a file argument: an empty name (``-o ""``, an unset shell variable) is a usage error naming
    the argument, not a default taken or "." looked up."""
    if not value:
        raise argparse.ArgumentTypeError("an empty file name")
    return value


def add_expectancy_floor_option(ap: argparse.ArgumentParser, auto: str) -> None:
    """``--expectancy-floor P|auto``: the low end of the expectancy's colour scale (None for ``auto``)."""
    def floor(value: str) -> float | None:
        if value == "auto":
            return None
        try:
            return check_expectancy_floor(float(value))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: give a probability between 0 and 1 (exclusive), "
                                             "or auto") from None

    ap.add_argument("--expectancy-floor", type=floor, default=DEFAULT_EXPECTANCY_FLOOR, metavar="P|auto",
                    help="the low end of the expectancy's log colour scale; lower probabilities take its colour "
                         f"(default {DEFAULT_EXPECTANCY_FLOOR:g}, the pipeline's heatmap.expectancy_floor, so that "
                         f"colours compare with its figures and pages; auto: {auto}, at most 0.1)")


def add_device_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", choices=DEVICES, default="cpu",
                    help="where the model runs: cpu (default), cuda, or auto = CUDA where there is one")


def command_device(device: str) -> "torch.device":
    """The device of ``--device``; ``cuda`` where there is none is an error naming the option."""
    from .model import choose_device

    try:
        return choose_device(device, 1, "--device")
    except RuntimeError:  # cuda without one
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu (or auto: CUDA where "
                         "there is one)") from None


def usable_cpus() -> tuple[int, int]:
    """The CPUs this process may run on (its affinity: what ``taskset``, a SLURM job's or a container's CPU set
    allows) and the machine's, as (usable, machine)."""
    machine = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)) or machine, machine
    except AttributeError:  # (no affinity on macOS)
        return machine, machine


def check_threads(ap: argparse.ArgumentParser, threads: int) -> None:
    """``--threads`` from 1 to the CPUs the process may run on (more only slows torch down, and a number of thousands
    makes it start thousands of threads, which ends in a crash, not an error), else a usage error naming both."""
    cpus, machine = usable_cpus()
    if threads < 1:
        ap.error(f"--threads {threads}: must be >= 1")
    if threads > cpus:
        has = (f"this machine has {cpus} CPU{'s' * (cpus > 1)}" if cpus == machine else
               f"this process may run on {cpus} of the machine's {machine} CPUs (its affinity: taskset, a SLURM job's "
               "or a container's CPU set)")
        ap.error(f"--threads {threads}: {has}; give at most {cpus}")


def check_output(path: str, option: str, inputs: Sequence[str | None] = ()) -> None:
    """An output the command could not write, or one that would replace one of its ``inputs``, is an error before
    anything is computed, naming the option."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    for given in inputs:
        if given and os.path.exists(path) and os.path.exists(given) and os.path.samefile(path, given):
            raise ValueError(f"{option} {path}: is the input {given}; give another file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")


def refuse_others_table(path: str, option: str, command: str) -> None:
    """An existing CSV table whose provenance record beside it (``<table>.provenance.json``) says another program
    wrote it, a rule of the pipeline (``divergence.csv``, an ablation table) or another command, is not replaced:
    the pipeline would read another table, or lose its own. A table ``command`` wrote, or a CSV without a record,
    is replaced."""
    record = table_record(path)
    if not (os.path.isfile(path) and record.is_file()):
        return
    try:
        made = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    if not isinstance(made, dict):
        raise ValueError(f"{option} {path}: a table beside a provenance record that cannot be read ({record.name}); "
                         "remove both first, or give another file name")
    if made.get("command") == command:  # (a pipeline job's record names its rule, none a command)
        return
    by = f"the pipeline's rule {made['rule']}" if made.get("rule") else made.get("command") or "another program"
    raise ValueError(f"{option} {path}: a table {by} wrote (its record {record.name} says so); this command would "
                     "replace it: give another file name")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_text(path: str | os.PathLike) -> dict[str, str]:
    """A PNG's text chunks (tEXt, zTXt, iTXt), wherever they lie, its pixels skipped unread. Pillow reads the chunks
    after the pixels only by decoding them (and refuses an image above its pixel limit: a DecompressionBombError for
    a command's figure of 4 gigapixels); a tool that rewrites metadata (exiftool) may put them there. An error
    (OSError, ValueError) for a file that is no PNG or is cut short."""
    import struct
    import zlib

    texts: dict[str, str] = {}
    with open(path, "rb") as fh:
        if fh.read(8) != PNG_SIGNATURE:
            raise ValueError(f"{path}: not a PNG")
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError(f"{path}: cut short")
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return texts
            if kind not in (b"tEXt", b"zTXt", b"iTXt"):
                fh.seek(length + 4, os.SEEK_CUR)  # the data and its CRC, unread
                continue
            data = fh.read(length)
            fh.seek(4, os.SEEK_CUR)
            key, _, rest = data.partition(b"\0")
            try:
                if kind == b"tEXt":
                    value = rest.decode("latin-1")
                elif kind == b"zTXt":  # a compression method byte (0: zlib), then the text
                    value = zlib.decompress(rest[1:]).decode("latin-1")
                else:  # compressed flag, method, language\0, translated keyword\0, text (UTF-8)
                    tail = rest[2:].split(b"\0", 2)[2]
                    value = (zlib.decompress(tail) if rest[0] else tail).decode("utf-8")
            except (zlib.error, IndexError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: a damaged {kind.decode()} chunk ({exc})") from None
            texts.setdefault(key.decode("latin-1"), value)


def refuse_pipeline_figure(path: str, option: str) -> None:
    """An existing PNG or SVG that a pipeline job drew (its metadata's ``Description`` names the rule:
    ``figures.record_job``) is not replaced: the run and its report would show this command's figure as the job's.
    Any other file, a figure this command drew among them, is replaced."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".svg") or not os.path.isfile(path):
        return
    try:
        if suffix == ".png":
            text = png_text(path).get("Description")
        else:
            with open(path, encoding="utf-8", errors="replace") as fh:
                found = re.search(r"<dc:description>(.*?)</dc:description>", fh.read(), re.S)
            text = html.unescape(found[1]) if found else None
        job = json.loads(text) if text else None
    except (OSError, ValueError):  # no readable image or record: a file to replace
        return
    if isinstance(job, dict) and job.get("rule"):
        raise ValueError(f"{option} {path}: a figure the pipeline's rule {job['rule']} drew (its metadata says so); "
                         "this command would replace it: give another file name")


def refuse_pipeline_page(path: str, option: str) -> None:
    """An existing HTML page whose provenance names the pipeline rule that wrote it (an explorer page, a cluster
    table's page: :func:`lstmscope.html_page.page_provenance`) is not replaced, as :func:`refuse_pipeline_figure`
    keeps a pipeline figure; any other file, a page this command wrote among them, is replaced."""
    from .html_page import page_rule

    if rule := page_rule(path):  # None for a page without one, or no readable file
        raise ValueError(f"{option} {path}: a page the pipeline's rule {rule} wrote (its provenance says so); this "
                         "command would replace it: give another file name")


def check_inputs(paths: Sequence[str | None]) -> None:
    """An input given as a folder (``results/activations/d0.0_r0`` for one of its files) is named as a folder, with
    the first names it holds, not reported as a file not found; a pipe or device (``<(…)``, ``/dev/stdin`` fed by a
    pipe) is named as such."""
    for path in paths:
        if path and os.path.isdir(path):
            try:  # the names a user would give (not hidden leftovers such as .test.tmp123.h5)
                held = sorted(f + "/" * os.path.isdir(os.path.join(path, f)) for f in os.listdir(path)
                              if not f.startswith("."))
            except OSError as exc:
                raise ValueError(f"{path}: a folder, not a file (its names cannot be read: {exc.strerror})") from None
            held = f"; it holds {', '.join(held[:4])}{', …' if len(held) > 4 else ''}" if held else " (empty)"
            raise ValueError(f"{path}: a folder, not a file{held}")
        if path and os.path.exists(path) and not os.path.isfile(path):  # a pipe (/dev/stdin fed by one), a device
            raise ValueError(f"{path}: not a regular file (a pipe or a device?); the command reads its inputs more "
                             "than once, so save it to a file and give that")


def check_checkpoint_file(checkpoint: str, order: str) -> None:
    """A file that is not a checkpoint at all (another argument given first, a metrics.json, a copy cut short, a
    training's resume state, a saved torch program) gets a line naming what it is and ``order`` (the order of the
    command's arguments), not torch's page on unpickling. A missing file is left to the loader, which names it."""
    if not os.path.isfile(checkpoint):
        return
    kind = file_kind(checkpoint)
    if kind in ("torch", "checkpoint", "unreadable"):  # (another program's torch file: the loader says what it lacks)
        return
    if kind == "resume":
        raise ValueError(f"{checkpoint}: {KINDS['resume']}, not a checkpoint; give the model.pt its training writes "
                         "when it ends (results/models/<model>/model.pt)")
    if kind in ("torchscript", "exported"):  # (torch.load's error on a TorchScript one: a paragraph on weights_only)
        raise ValueError(f"{checkpoint}: {KINDS[kind]}, not a checkpoint; give a model.pt a training of the pipeline "
                         "wrote (results/models/<model>/model.pt)")
    if kind in KINDS:
        raise ValueError(f"{checkpoint}: {KINDS[kind]}, not a checkpoint; {order}")
    raise ValueError(f"{checkpoint}: not a checkpoint written by torch.save (a complete "
                     "results/models/<model>/model.pt)")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# what a file is, as a command's error names it (file_kind's names)
KINDS = {
    "activations": "an activations file",
    "ablation": "an ablation file",
    "histograms": "a histogram file",
    "checkpoint": "a model checkpoint",
    "resume": "a training's resume state",
    "torchscript": "a TorchScript archive (torch.jit.save's)",
    "exported": "an exported program (torch.export.save's)",
    "hdf5": "an HDF5 file",
    "csv": "a CSV table",
    "text": "a text file",
}


def lstmscope_kind(found: str) -> str | None:
    """The kind a lstmscope HDF5 file's ``format`` attribute names (lstmscope-<kind>-<version>: one of KINDS' names),
    or None for another value."""
    kind = re.fullmatch(r"lstmscope-([a-z]+)-\d+", found)
    return kind[1] if kind and kind[1] in KINDS else None


def file_kind(path: str) -> str:
    """What the file at ``path`` is, read from its first bytes and, where it is one of lstmscope's, its format: one
    of KINDS' names (a lstmscope HDF5 file by its ``format``, lstmscope-<kind>-<version>; "hdf5" for another or an
    unreadable one; a torch file by the format its record names, "torchscript" and "exported" for the archives of
    torch.jit.save and torch.export.save), "torch" (another program's torch.save file), "binary", "" (empty) or
    "unreadable" (cannot be opened: its reader says why). An HDF5 file cut short is an error saying so (HDF5's own
    words are about superblocks)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:  # its reader names the reason (Permission denied)
        return "unreadable"
    if not head:
        return ""
    if head.startswith(HDF5_SIGNATURE):
        import h5py

        try:
            with h5py.File(path, "r", locking=False) as f:
                found = str(f.attrs.get("format", ""))
        except OSError as exc:
            cut = re.search(r"eof = (\d+).*stored_eof = (\d+)", str(exc))
            if cut:
                raise ValueError(f"{path}: an HDF5 file cut short ({cut[1]} of its {cut[2]} bytes: a copy or a write "
                                 "that did not finish); copy or write it again") from None
            return "hdf5"
        return lstmscope_kind(found) or "hdf5"
    if zipfile.is_zipfile(path):  # torch.save's format: a zip archive whose data.pkl holds the record's text
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                record = next((z.read(n) for n in names if n.endswith("/data.pkl")), b"")
        except (OSError, zipfile.BadZipFile, RuntimeError):
            return "binary"
        for kind, fmt in (("checkpoint", b"lstmscope-checkpoint-"), ("resume", b"lstmscope-resume-")):
            if fmt in record:
                return kind
        if record and any(n.endswith("/constants.pkl") for n in names):  # torch.jit.save's archive: code and weights
            return "torchscript"
        if any(n.endswith("/archive_format") for n in names) or "serialized_exported_program.json" in names:
            return "exported"  # torch.export.save's (.pt2), as torch writes it now and as torch 2.2 did
        return "torch" if record else "binary"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < 4096 or exc.start < len(head) - 3:  # not merely a character cut at the 4096th byte
            return "binary"
        text = head[:exc.start].decode("utf-8")
    if "\x00" in text:
        return "binary"
    first = text.split("\n", 1)[0]
    return "csv" if first.count(",") >= 2 and "\n" in text and " " not in first.strip() else "text"


# where a command's input of each kind is found, as its error says
FOUND = {
    "activations": "results/activations/<model>/<text>.h5, or lstmscope-dump's",
    "ablation": "results/ablation/<model>/<text>.h5",
    "csv": "results/neurons/<model>/<text>/divergence.csv",
    "text": "UTF-8 text",
    "checkpoint": "results/models/<model>/model.pt",
}


def check_kinds(inputs: Sequence[tuple[str | None, str, str]]) -> None:
    """Each input (path or None, the argument that gave it: an option or a positional's name in capitals, the kind it
    must be: a KINDS name) of another kind that lstmscope knows (one of its own files, a table, a text) is an error
    naming what it is, what was wanted and where that is found, and the command's argument that takes it, if one
    does (an ablation file given for the activations file: ``--ablation``). A missing, empty or binary file, and an
    HDF5 or torch file of another program where an HDF5 or torch file is wanted, are left to the reader, which
    names what it lacks."""
    def named(argument: str) -> str:
        return argument if argument.startswith("-") else f"the {argument} argument"

    for path, argument, wanted in inputs:
        if not path or not os.path.isfile(path):
            continue
        kind = file_kind(path)
        if kind == wanted or kind not in KINDS or (kind == "hdf5" and wanted != "text"):
            continue
        if wanted in ("text", "csv") and kind in ("text", "csv"):  # its reader says what is wrong inside
            continue
        takers = [named(a) for _, a, w in inputs if w == kind and a != argument]
        hint = f"; {' or '.join(dict.fromkeys(takers))} takes it" if takers else ""
        given = f"{argument} {path}" if argument.startswith("-") else path
        raise ValueError(f"{given}: {KINDS[kind]}, not {KINDS[wanted]} ({FOUND[wanted]}){hint}")


def failed(prog: str, error: object) -> int:
    """Print a command's error as one line (``prog: error: …``; the line breaks of HDF5's and torch's messages
    become spaces) and return the exit status 1."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 1


def say(prog: str, text: str) -> int:
    """Print a command's result ``text`` on standard output and return its exit status: 0, also when the reader
    has gone (``| head``, ``| grep -q``: the work is done and nothing is left to say), else 1 with one line naming
    standard output (``> /dev/full``). Either way standard output then leads nowhere, so Python's flush at exit
    adds no traceback of its own."""
    try:
        print(text, flush=True)
        return 0
    except OSError as exc:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # a stream without a descriptor of its own (io.UnsupportedOperation)
            sys.stdout = open(os.devnull, "w")
        if isinstance(exc, BrokenPipeError):
            return 0
        return failed(prog, f"standard output cannot be written ({exc.strerror or exc})")


def unreadable(paths: Sequence[str | None], exc: OSError) -> ValueError:
    """One line for an OSError met reading ``paths`` (the command's input files; None: not given): HDF5's read
    errors name no file (and no system error: then the file itself is suspect), so the line names the inputs."""
    named = [str(p) for p in paths if p]
    where = exc.filename or " or ".join(named)
    hint = "; a damaged or truncated file? Write it again" if exc.errno is None else ""
    return ValueError(f"{where}: cannot be read ({exc.strerror or exc}){hint}")


@contextlib.contextmanager
def writing(option: str, path: str, reading: Sequence[str | None] = ()) -> Iterator[None]:
    """Turn an OSError met while ``path`` (given as ``option``) is written into one line: "cannot be written" when it
    concerns that file or its temporary name (same folder, the name's stem in it), else "cannot be read", naming
    the file the error names (an input read in the same step), or, for an error that names no file and no
    system error (HDF5's read errors), the inputs ``reading``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        exc = error if isinstance(error, OSError) else error.__context__
        if not isinstance(exc, OSError):  # torch's RuntimeError (CUDA out of memory): not a write's
            raise
        # (h5py closing a file after a failed write raises a RuntimeError of its own; the write's error says it)
        name = exc.filename
        if name is None and exc.errno is None and any(reading):
            raise unreadable(reading, exc) from None
        ours = name is None or (os.path.dirname(os.path.abspath(name)) == os.path.dirname(os.path.abspath(path))
                                and Path(path).stem in os.path.basename(str(name)))
        if ours:  # the system's words for its error number (HDF5's message around them runs to several lines)
            reason = os.strerror(exc.errno) if exc.errno else exc.strerror or exc
            raise ValueError(f"{option} {path}: cannot be written ({reason})") from None
        raise unreadable((name,), exc) from None

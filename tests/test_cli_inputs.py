"""The four commands' inputs: a folder for a file, a damaged file, an output that is one of the inputs, a command stopped on the way."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import h5py
import pytest
import torch

from lstmscope import dump_cli
from lstmscope.ablation_cli import main as ablate_main
from lstmscope.explorer_cli import main as explorer_main
from lstmscope.heatmap_cli import main as heatmap_main

from conftest import run_unprivileged, skip_or_fail
from damage import damage_largest_part
from neurons_support import degenerate, divergence_csv, other_run_ablation, tiny  # noqa: F401 (fixtures)


def damaged_copy(src, dst):
    """A copy of an activations file whose stored words point nowhere (their heap addresses overwritten), as a
    disk or a transfer damages a file: it opens, its attributes read, its words do not."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r") as f:
        ds = f["tokens/words"]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(dst, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 256)
    return dst


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{command}: error: ") and "Traceback" not in err, err
    return err


def test_a_damaged_activations_file_is_one_line_naming_it(tiny, divergence_csv, tmp_path, capsys):
    bad = damaged_copy(tiny.activations, tmp_path / "bad.h5")
    with h5py.File(bad, "r") as f, pytest.raises(OSError):
        f["tokens/words"][:]  # the damage is real: h5py cannot read the words
    said = f"{bad}: a part of it cannot be read ("  # the activations reader's line: the file is named
    out = tmp_path / "x.png"
    assert heatmap_main([str(bad), "-n", "1:0", "-o", str(out)]) == 1
    assert said in one_error_line(capsys, "lstmscope-heatmap") and not out.exists()
    page = tmp_path / "x.html"
    assert explorer_main([str(bad), "--divergence", str(divergence_csv), "-o", str(page)]) == 1
    err = one_error_line(capsys, "lstmscope-explorer")
    assert said in err and "--output" not in err and not page.exists()  # the input is named, not the output
    table = tmp_path / "x.csv"
    assert ablate_main([str(tiny.checkpoint), str(bad), "-n", "1:0", "-o", str(table)]) == 1
    err = one_error_line(capsys, "lstmscope-ablate")
    assert said in err and str(tiny.checkpoint) not in err and not table.exists()


def test_a_checkpoint_damaged_inside_is_one_line_naming_it(tiny, tmp_path, capsys):
    """Bytes of the largest tensor overwritten, the size kept: the archive still opens and torch.load reads other
    weights from it (perplexity nan or just wrong); the zip's own CRC-32 of that part gives it away."""
    bad = tmp_path / "model.pt"
    shutil.copy(tiny.checkpoint, bad)
    part = damage_largest_part(bad)
    said = f"{bad}: damaged: its part {part} does not match its checksum (CRC-32)"
    text, out = tmp_path / "t.txt", tmp_path / "o.h5"
    text.write_text("the film .\n", encoding="utf-8")
    assert dump_cli.main([str(bad), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 1
    assert said in one_error_line(capsys, "lstmscope-dump") and not out.exists()
    assert ablate_main([str(bad), str(tiny.activations), "-n", "1:0"]) == 1
    assert said in one_error_line(capsys, "lstmscope-ablate")


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tiny, divergence_csv, tmp_path, capsys):
    """No command's output may replace one of its inputs: lstmscope-ablate's -o takes any name ending in .csv and
    --heatmap a figure's, lstmscope-dump's any .h5, and an input may itself be named so (a checkpoint model.csv,
    activations a.png), as the heatmap or explorer command's may be named like a figure or a page."""
    acts, ckpt = tmp_path / "a.h5", tmp_path / "model.pt"
    shutil.copy(tiny.activations, acts)
    shutil.copy(tiny.checkpoint, ckpt)
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    before = {p: p.read_bytes() for p in (acts, ckpt, text)}
    # ablate's -o must end in .csv and --heatmap in a figure's suffix: inputs named so
    csv_ckpt, png_acts = tmp_path / "model.csv", tmp_path / "a.png"
    shutil.copy(tiny.checkpoint, csv_ckpt)
    shutil.copy(tiny.activations, png_acts)
    before.update({p: p.read_bytes() for p in (csv_ckpt, png_acts)})
    calls = [
        ("lstmscope-ablate", ablate_main, [str(csv_ckpt), str(acts), "-n", "1:0", "-o", str(csv_ckpt)], csv_ckpt),
        ("lstmscope-ablate", ablate_main, [str(ckpt), str(png_acts), "-n", "1:0", "--heatmap",
                                           str(tmp_path / "." / "a.png")], png_acts),  # the same file by another name
    ]
    for command, main, args, clobbered in calls:
        assert main(args) == 1, args
        assert f"is the input {clobbered}; give another file name" in one_error_line(capsys, command), args
    # a dump over its own text file: the text is the input (the output must end in .h5, so the text is named so)
    h5_text = tmp_path / "probe.h5"
    h5_text.write_text("the film .\n", encoding="utf-8")
    assert dump_cli.main([str(ckpt), str(h5_text), "--vocabulary", str(tiny.vocabulary), "-o", str(h5_text)]) == 1
    assert f"is the input {h5_text}" in one_error_line(capsys, "lstmscope-dump")
    assert h5_text.read_text(encoding="utf-8") == "the film .\n"
    # activations and a divergence table named like the heatmap's figure and the explorer's page
    svg, page, table = tmp_path / "a.svg", tmp_path / "a.html", tmp_path / "d.html"
    shutil.copy(tiny.activations, svg)
    shutil.copy(tiny.activations, page)
    shutil.copy(divergence_csv, table)
    before.update({p: p.read_bytes() for p in (svg, page, table)})
    calls = [
        ("lstmscope-heatmap", heatmap_main, [str(svg), "-n", "1:0", "-o", str(svg)], svg),
        ("lstmscope-explorer", explorer_main, [str(page), "--divergence", str(divergence_csv), "-o", str(page)], page),
        ("lstmscope-explorer", explorer_main, [str(acts), "--divergence", str(table), "-o", str(table)], table),
    ]
    for command, main, args, clobbered in calls:
        assert main(args) == 1, args
        assert f"is the input {clobbered}; give another file name" in one_error_line(capsys, command), args
    assert all(p.read_bytes() == data for p, data in before.items())


def test_a_folder_given_for_an_input_file_is_named_as_a_folder_with_what_it_holds(tiny, divergence_csv, tmp_path,
                                                                                  capsys):
    """Each command's input files, given as the folder holding them (as a path completed one level short is), get one
    line naming the folder and what it holds, not "not found"."""
    empty = tmp_path / "empty"
    empty.mkdir()
    held = tmp_path / "held"
    (held / "sub").mkdir(parents=True)
    for name in ("c.h5", "a.h5", "z.txt", "b.h5", ".a.tmp12.h5"):
        (held / name).write_text("")
    listed = f"{held}: a folder, not a file; it holds a.h5, b.h5, c.h5, sub/, …"  # four names, the folder marked,
    # a hidden leftover not among them
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    out = str(tmp_path / "x")
    calls = [
        ("lstmscope-heatmap", heatmap_main, [str(held), "-n", "1:0", "-o", out + ".png"], listed),
        ("lstmscope-heatmap", heatmap_main, [str(tiny.activations), "-n", "1:0", "--ablation", str(empty), "-o",
                                             out + ".png"], f"{empty}: a folder, not a file (empty)"),
        ("lstmscope-explorer", explorer_main, [str(tiny.activations), "--divergence", str(held), "-o", out + ".html"],
         listed),
        ("lstmscope-ablate", ablate_main, [str(held), str(tiny.activations), "-n", "1:0"], listed),
        ("lstmscope-ablate", ablate_main, [str(tiny.checkpoint), str(held), "-n", "1:0"], listed),
        ("lstmscope-dump", dump_cli.main, [str(tiny.checkpoint), str(empty), "--vocabulary", str(tiny.vocabulary),
                                           "-o", out + ".h5"], f"{empty}: a folder, not a file (empty)"),
        ("lstmscope-dump", dump_cli.main, [str(tiny.checkpoint), str(text), "--vocabulary", str(held), "-o",
                                           out + ".h5"], listed),
    ]
    for command, main, args, said in calls:
        assert main(args) == 1, args
        assert said in one_error_line(capsys, command), args
    assert sorted(os.listdir(tmp_path)) == ["empty", "held", "t.txt"]  # nothing written


def test_a_pipe_given_for_an_input_file_is_named_as_a_pipe_not_as_missing(tiny, tmp_path, capsys):
    """A named pipe (as ``<(…)`` or ``/dev/stdin`` give) exists but cannot be read twice: it is named for what it is,
    before anything reads from it (a read would block on a pipe no one writes)."""
    fifo = tmp_path / "p.txt"
    os.mkfifo(fifo)
    out = str(tmp_path / "x")
    said = f"{fifo}: not a regular file (a pipe or a device?)"
    calls = [
        ("lstmscope-dump", dump_cli.main, [str(tiny.checkpoint), str(fifo), "--vocabulary", str(tiny.vocabulary),
                                           "-o", out + ".h5"]),
        ("lstmscope-heatmap", heatmap_main, [str(fifo), "-n", "1:0", "-o", out + ".png"]),
    ]
    done = threading.Event()

    def unblock_a_reader():  # should a command read the pipe after all, it gets an end of file, not a hung test
        while not done.wait(20):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader yet
                pass

    watchdog = threading.Thread(target=unblock_a_reader, daemon=True)
    watchdog.start()
    try:
        for command, main, args in calls:
            assert main(args) == 1, args
            err = one_error_line(capsys, command)
            assert said in err and "not found" not in err, args
    finally:
        done.set()
        watchdog.join()
    assert sorted(os.listdir(tmp_path)) == ["p.txt"]  # nothing written


def test_a_folder_whose_names_cannot_be_read_is_still_one_line(tmp_path):
    """A folder the user may not list is named all the same. Its mode refuses the listing (run_unprivileged)."""
    base = Path(tempfile.mkdtemp(prefix="lstmscope-unlistable-"))
    held = base / "held"
    try:
        held.mkdir()
        (held / "d0.0_r0_test.h5").write_bytes(b"")
        held.chmod(0o311)  # may be entered and stat'ed, not listed
        done = run_unprivileged([sys.executable, "-m", "lstmscope.explorer_cli", str(held), "-o", str(base / "x.html")],
                                base)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr == (f"lstmscope-explorer: error: {held}: a folder, not a file (its names cannot be read: "
                               "Permission denied)\n"), done.stderr
        assert not (base / "x.html").exists() and sorted(os.listdir(held)) == ["d0.0_r0_test.h5"]  # nothing written
    finally:
        if held.exists():
            held.chmod(0o755)
        shutil.rmtree(base)


def test_a_dump_stopped_by_sigterm_leaves_nothing_and_old_leftovers_go(tiny, tmp_path, capsys, monkeypatch):
    text = tmp_path / "t.txt"
    text.write_text("the film was released .\n" * 50, encoding="utf-8")
    out = tmp_path / "o.h5"
    real = dump_cli.dump_activations
    seen = []

    def then_terminated(*args, **kwargs):  # the whole file written under its temporary name, then a kill
        summary = real(*args, **kwargs)
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.startswith(".o.tmp"))
        os.kill(os.getpid(), signal.SIGTERM)
        return summary

    monkeypatch.setattr(dump_cli, "dump_activations", then_terminated)
    handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the test process's, put back below
    try:
        assert dump_cli.main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary),
                              "-o", str(out)]) == 143  # 128 + SIGTERM's 15
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the command's handler is gone with it
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert seen, "the dump wrote no temporary file"
    assert capsys.readouterr().err == f"lstmscope-dump: stopped; {out} not written\n"  # one line (no progress bar
    # where stderr is no terminal)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
    # what a dump killed outright (SIGKILL) leaves, the temporary file of the temporary file, goes with the next one
    monkeypatch.setattr(dump_cli, "dump_activations", real)
    left = tmp_path / "..o.tmp4242.tmp4242.h5"
    left.write_bytes(b"partial")
    kept = tmp_path / "..other.tmp4242.tmp4242.h5"  # another output's
    kept.write_bytes(b"partial")
    assert dump_cli.main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name, "o.h5", "t.txt"]
    assert dump_cli.main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary),
                          "-o", str(tmp_path / "UP.H5")]) == 0  # the suffix in any case
    # called from a thread (where Python lets no one set a signal handler) the command still runs
    results = []
    worker = threading.Thread(target=lambda: results.append(dump_cli.main(
        [str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(tmp_path / "t.h5")])))
    worker.start()
    worker.join()
    assert results == [0] and (tmp_path / "t.h5").is_file()


@pytest.mark.parametrize("command", ["lstmscope-heatmap", "lstmscope-explorer"])
def test_the_heatmap_and_explorer_commands_stopped_say_so_and_leave_nothing(tiny, divergence_csv, tmp_path, capsys,
                                                                            monkeypatch, command):
    """As the dump does: stopped by SIGTERM (``kill``, a time limit) while writing, the command removes its
    temporary file, says so in one line and exits with 143; Ctrl-C, 130."""
    from lstmscope import atomic

    out = tmp_path / ("o.png" if command == "lstmscope-heatmap" else "o.html")
    args = ([str(tiny.activations), "-n", "1:0", "-o", str(out)] if command == "lstmscope-heatmap"
            else [str(tiny.activations), "--divergence", str(divergence_csv), "-o", str(out)])
    seen = []
    flush = atomic.fsync

    def stopped_while_writing(sig):  # the command's own writer runs; the signal comes as its file is flushed
        def fsync(path):
            path = Path(path)
            if path.is_file() and path.name.startswith(f".{out.stem}.tmp") and path.stat().st_size > 0:
                seen.append(path.name)
                os.kill(os.getpid(), sig)
            flush(path)
        return fsync

    handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the test process's, put back below
    try:
        for sig, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
            monkeypatch.setattr(atomic, "fsync", stopped_while_writing(sig))
            main = heatmap_main if command == "lstmscope-heatmap" else explorer_main
            assert main(args) == status
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the command's handler is gone with it
            assert capsys.readouterr().err == f"{command}: stopped; {out} not written\n"
            assert not any(p.name in (out.name, *seen) for p in tmp_path.iterdir())
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert len(seen) == 2


def _nan_first(state):
    state["state_dict"]["rnn.weight_hh_l1"][3, 2] = float("nan")
    return state


@pytest.mark.parametrize("edit, said", [
    (lambda s: {**s, "model_config": "x"}, "model_config is str, not a mapping of vocab_size, embedding_size, "
                                           "hidden_size, layers, dropout"),
    (lambda s: {**s, "model_config": {k: v for k, v in s["model_config"].items() if k != "layers"}},
     "model_config lacks layers (save_checkpoint writes vocab_size, embedding_size, hidden_size, layers, dropout)"),
    (lambda s: {**s, "model_config": {**s["model_config"], "extra_key": 1}},
     "model_config has unknown keys extra_key (save_checkpoint writes vocab_size, embedding_size, hidden_size, "
     "layers, dropout)"),
    (lambda s: {**s, "model_config": {**s["model_config"], "hidden_size": "16"}},
     "model_config hidden_size is '16', not an integer"),
    (lambda s: {**s, "model_config": {**s["model_config"], "layers": 0}},
     "model config layers=0: must be a positive integer"),
    (lambda s: {k: v for k, v in s.items() if k != "state_dict"},
     "holds no weights (state_dict is NoneType, not a mapping of the model's tensors); train it again"),
    (lambda s: {**s, "model_config": {**s["model_config"], "hidden_size": 8}},  # the weights are of 12 units
     "parameter rnn.weight_ih_l0 has shape (48, 8), but its model_config gives (32, 8)"),
    (lambda s: {**s, "state_dict": {k: v for k, v in s["state_dict"].items() if k != "decoder.bias"}},
     "parameter decoder.bias is missing from its weights"),
    (lambda s: {**s, "state_dict": {**s["state_dict"], "rnn.weight_ih_l2": s["state_dict"]["rnn.weight_ih_l1"]}},
     "parameter rnn.weight_ih_l2 is no part of the model its model_config gives"),
    (_nan_first, "parameter rnn.weight_hh_l1 holds 1 non-finite values (NaN or inf); train it again"),
])
def test_a_checkpoint_with_the_right_format_tag_but_wrong_contents_is_one_line_naming_it(tiny, tmp_path, capsys, edit,
                                                                                         said):
    """Its format tag right, a checkpoint whose model_config lacks a key (or has one more, or is text) stopped with
    a TypeError, one without weights with a KeyError, weights of other shapes with torch's long message naming no
    file, and NaN weights were loaded and ran."""
    import torch

    from lstmscope.model import load_checkpoint

    bad = tmp_path / "model.pt"
    torch.save(edit(torch.load(tiny.checkpoint, weights_only=True)), bad)
    with pytest.raises(ValueError) as err:
        load_checkpoint(bad)
    assert str(err.value) == f"{bad}: {said}"
    text, out = tmp_path / "t.txt", tmp_path / "o.h5"
    text.write_text("the film .\n", encoding="utf-8")
    assert dump_cli.main([str(bad), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 1
    assert f"{bad}: {said}" in one_error_line(capsys, "lstmscope-dump") and not out.exists()


def test_a_result_nobody_reads_ends_quietly_and_a_full_standard_output_is_one_line(tiny, tmp_path):
    """``| head`` or ``| grep -q`` closes the pipe before the command prints its result: the work is done, so it
    ends with 0 and no traceback; ``> /dev/full`` is one line naming standard output. The output is written."""
    if not os.path.exists("/dev/full"):
        skip_or_fail("no /dev/full here")
    out, table = tmp_path / "x.png", tmp_path / "x.csv"
    heatmap = [sys.executable, "-m", "lstmscope.heatmap_cli", str(tiny.activations), "-n", "1:0", "--tokens", "20",
               "-o", str(out)]
    ablate = [sys.executable, "-m", "lstmscope.ablation_cli", str(tiny.checkpoint), str(tiny.activations),
              "-n", "1:0", "-n", "2:1", "--together", "--tokens", "60", "-o", str(table)]
    for command, written in ((heatmap, out), (ablate, table)):
        reader, writer = os.pipe()
        os.close(reader)  # the reader has gone before anything is printed
        try:
            done = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=600)
        finally:
            os.close(writer)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "error" not in done.stderr.lower(), done.stderr  # notes may come
        assert written.is_file()
        written.unlink()
    with open("/dev/full", "w") as full:
        done = subprocess.run(heatmap, stdout=full, stderr=subprocess.PIPE, text=True, timeout=600)
    assert done.returncode == 1 and out.is_file(), done.stderr
    assert done.stderr == ("lstmscope-heatmap: error: standard output cannot be written (No space left on device)\n")


@pytest.mark.parametrize("command, argv", [
    ("heatmap", ["{act}", "-n", "1:0", "-o", ""]),
    ("heatmap", ["", "-n", "1:0", "-o", "{out}.png"]),
    ("heatmap", ["{act}", "-n", "1:0", "-a", "", "-o", "{out}.png"]),
    ("explorer", ["{act}", "--divergence", "", "-o", "{out}.html"]),
    ("explorer", ["{act}", "--ablation", "", "-o", "{out}.html"]),
    ("ablate", ["{ckpt}", "{act}", "-n", "1:0", "-o", ""]),
    ("ablate", ["{ckpt}", "{act}", "-n", "1:0", "--heatmap", ""]),
    ("ablate", ["{ckpt}", "{act}", "-n", "1:0", "--hold-from", ""]),
    ("dump", ["{ckpt}", "{act}", "--vocabulary", "", "-o", "{out}.h5"]),
    ("dump", ["", "{act}", "-o", "{out}.h5"]),
], ids=lambda v: v if isinstance(v, str) else " ".join(v).replace("{", "").replace("}", ""))
def test_an_empty_file_name_is_a_usage_error_naming_the_argument(tiny, tmp_path, capsys, command, argv):
    """An empty name (``-o "$OUT"`` with OUT unset) was a default taken in its place (``--divergence ""``: the table
    beside the file), nothing written with status 0 (``-o ""`` of ablate), or "." reported missing."""
    mains = {"heatmap": heatmap_main, "explorer": explorer_main, "ablate": ablate_main, "dump": dump_cli.main}
    argv = [a.format(act=tiny.activations, ckpt=tiny.checkpoint, out=tmp_path / "x") for a in argv]
    with pytest.raises(SystemExit) as exit_:
        mains[command](argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().endswith(": an empty file name"), err
    assert "argument " in err.strip().splitlines()[-1] and not list(tmp_path.iterdir())


def test_a_value_that_starts_with_a_dash_and_a_digit_is_joined_to_its_option():
    """``-n -1:5`` reaches the command's own check of the layer; other arguments, and everything after ``--``,
    stay as given."""
    from lstmscope.cli import dashed_values

    options = ("-n", "--neuron")
    assert dashed_values(["f.h5", "-n", "-1:5", "--neuron", "-2:0", "-o", "x.png"], options) == [
        "f.h5", "-n-1:5", "--neuron=-2:0", "-o", "x.png"]
    assert dashed_values(["-n", "2:0", "-n", "-e", "-n"], options) == ["-n", "2:0", "-n", "-e", "-n"]
    assert dashed_values(["--", "-n", "-1:5"], options) == ["--", "-n", "-1:5"]
    assert dashed_values(["--start", "-3"], options) == ["--start", "-3"]  # not one of the options
    # a long option abbreviated as argparse allows; "--" alone and a prefix of no option stay
    assert dashed_values(["--neu", "-1:5", "--n", "-2:0"], options) == ["--neu=-1:5", "--n=-2:0"]
    assert dashed_values(["--nix", "-1:5"], options) == ["--nix", "-1:5"]


def test_a_file_of_another_kind_is_named_with_the_argument_that_takes_it(tiny, divergence_csv, other_run_ablation,
                                                                         tmp_path, capsys):
    """Files swapped between the arguments (all of lstmscope's HDF5 files end in .h5; an ablation file and an
    activations file of one text are both <text>.h5) are named for what they are, with the argument that takes
    them, instead of the attributes the wanted kind would have; nothing is written."""
    act, abl, ckpt, csv = tiny.activations, other_run_ablation, tiny.checkpoint, divergence_csv
    found = {"activations": "results/activations/<model>/<text>.h5, or lstmscope-dump's",
             "ablation": "results/ablation/<model>/<text>.h5", "csv": "results/neurons/<model>/<text>/divergence.csv"}
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    fig, page, table, dumped = (tmp_path / n for n in ("x.png", "x.html", "x.csv", "x.h5"))
    cases = [
        ("lstmscope-heatmap", heatmap_main, [abl, "-n", "1:0", "-o", fig],
         f"{abl}: an ablation file, not an activations file ({found['activations']}); --ablation takes it"),
        ("lstmscope-heatmap", heatmap_main, [act, "-n", "1:0", "--ablation", act, "-o", fig],
         f"--ablation {act}: an activations file, not an ablation file ({found['ablation']}); the ACTIVATIONS "
         "argument or --median-from takes it"),
        ("lstmscope-heatmap", heatmap_main, [act, "-n", "1:0", "--median-from", ckpt, "-o", fig],
         f"--median-from {ckpt}: a model checkpoint, not an activations file ({found['activations']})"),
        ("lstmscope-explorer", explorer_main, [act, "--divergence", act, "-o", page],
         f"--divergence {act}: an activations file, not a CSV table ({found['csv']}); the ACTIVATIONS argument or "
         "--median-from takes it"),
        ("lstmscope-explorer", explorer_main, [csv, "-o", page],
         f"{csv}: a CSV table, not an activations file ({found['activations']}); --divergence takes it"),
        ("lstmscope-ablate", ablate_main, [ckpt, abl, "-n", "1:0", "-o", table],
         f"{abl}: an ablation file, not an activations file ({found['activations']})"),
        ("lstmscope-ablate", ablate_main, [ckpt, ckpt, "-n", "1:0", "-o", table],
         f"{ckpt}: a model checkpoint, not an activations file ({found['activations']}); the CHECKPOINT argument "
         "takes it"),
        ("lstmscope-ablate", ablate_main, [ckpt, act, "-n", "1:0", "--hold-from", abl, "-o", table],
         f"--hold-from {abl}: an ablation file, not an activations file ({found['activations']})"),
        ("lstmscope-dump", dump_cli.main, [ckpt, act, "--vocabulary", tiny.vocabulary, "-o", dumped],
         f"{act}: an activations file, not a text file (UTF-8 text)"),
        ("lstmscope-ablate", ablate_main, [csv, act, "-n", "1:0"],
         f"{csv}: a CSV table, not a checkpoint; the arguments are CHECKPOINT ACTIVATIONS"),
    ]
    for command, main, args, message in cases:
        assert main([str(a) for a in args]) == 1, args
        err = one_error_line(capsys, command)
        assert message in err, (err, message)
    assert not any(p.exists() for p in (fig, page, table, dumped))


def test_an_hdf5_file_cut_short_is_named_as_cut_short_with_its_sizes(tiny, tmp_path, capsys):
    """HDF5's own words are about superblocks and eof; the line says the copy or write did not finish."""
    whole = tiny.activations.stat().st_size
    cut = tmp_path / "cut.h5"
    cut.write_bytes(tiny.activations.read_bytes()[:whole // 3])
    out = tmp_path / "x.png"
    assert heatmap_main([str(cut), "-n", "1:0", "-o", str(out)]) == 1
    err = one_error_line(capsys, "lstmscope-heatmap")
    assert f"{cut}: an HDF5 file cut short ({whole // 3} of its {whole} bytes" in err and not out.exists()


def test_the_dump_does_not_replace_another_lstmscope_file_and_ablate_writes_only_csv(tiny, other_run_ablation,
                                                                                     tmp_path, capsys):
    """lstmscope-dump's -o only has to end in .h5, which every lstmscope HDF5 file does; lstmscope-ablate's -o is
    the table, where lstmscope-heatmap's -o is a figure: a figure's (or an .h5) name is refused before anything runs."""
    copy = tmp_path / "ablation.h5"
    shutil.copy(other_run_ablation, copy)
    before = copy.read_bytes()
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    assert dump_cli.main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(copy)]) == 1
    assert (f"--output {copy}: an ablation file (lstmscope-ablation-1), not an activations file; this command would "
            "replace it") in one_error_line(capsys, "lstmscope-dump")
    assert copy.read_bytes() == before
    for name in ("fig.png", "ablation.h5"):
        with pytest.raises(SystemExit) as exit_:
            ablate_main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:0", "-o", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.strip().endswith(
            f"--output {tmp_path / name}: the table is written as CSV, to a name ending in .csv (the figure: "
            "--heatmap FILE)"), err
    assert copy.read_bytes() == before and not (tmp_path / "fig.png").exists()


@pytest.mark.parametrize("command", ["dump", "ablate"])
def test_more_threads_than_cpus_is_a_usage_error(tiny, tmp_path, capsys, command):
    """--threads 100000 made torch start that many threads: a crash with no message (the dump) or a page of
    traceback (ablate). At most the machine's CPUs (where the tests may use all); the number said is os.cpu_count()."""
    cpus = os.cpu_count()
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < cpus:
        pytest.skip("the tests may not use every CPU of the machine (the next test covers that)")
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    argv = {"dump": [str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary),
                     "-o", str(tmp_path / "x.h5")],
            "ablate": [str(tiny.checkpoint), str(tiny.activations), "-n", "1:0"]}[command]
    main = {"dump": dump_cli.main, "ablate": ablate_main}[command]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--threads", str(cpus + 1)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().endswith(
        f"--threads {cpus + 1}: this machine has {cpus} CPU{'s' * (cpus > 1)}; give at most {cpus}"), err
    threads = torch.get_num_threads()
    try:
        assert main([*argv, "--threads", str(cpus)]) == 0, capsys.readouterr().err  # every CPU of the machine: allowed
    finally:
        torch.set_num_threads(threads)  # (the commands set torch's threads for the process: the tests' own back)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or os.cpu_count() < 2, reason="needs CPU affinity and 2 CPUs")
def test_threads_above_the_cpus_the_process_may_use_is_a_usage_error(tiny, tmp_path, capsys):
    """Under taskset, or in a SLURM job or container given some of the machine's CPUs, the cap is the CPUs the
    process may run on (its affinity), and the message says which of the two it is."""
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    machine, allowed = os.cpu_count(), os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        with pytest.raises(SystemExit) as exit_:
            dump_cli.main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary),
                           "-o", str(tmp_path / "x.h5"), "--threads", "2"])
    finally:
        os.sched_setaffinity(0, allowed)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().endswith(
        f"--threads 2: this process may run on 1 of the machine's {machine} CPUs (its affinity: taskset, a SLURM "
        "job's or a container's CPU set); give at most 1"), err
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.s:DeprecationWarning")
def test_a_saved_torch_program_for_a_checkpoint_is_named_for_what_it_is(tiny, tmp_path, capsys):
    """The archives of torch.jit.save and torch.export.save are torch zips too; torch.load's own error on the first is
    a paragraph on weights_only, and the second was "not a checkpoint written by torch.save"."""
    layer = torch.nn.Linear(4, 4)
    scripted, exported = tmp_path / "layer.pt", tmp_path / "layer.pt2"
    torch.jit.save(torch.jit.script(layer), str(scripted))
    torch.export.save(torch.export.export(layer, (torch.zeros(1, 4),)), str(exported))
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    table, dumped = tmp_path / "x.csv", tmp_path / "x.h5"
    for archive, kind in [(scripted, "a TorchScript archive (torch.jit.save's)"),
                          (exported, "an exported program (torch.export.save's)")]:
        message = (f"{archive}: {kind}, not a checkpoint; give a model.pt a training of the pipeline wrote "
                   "(results/models/<model>/model.pt)")
        for command, main, args in [
            ("lstmscope-ablate", ablate_main, [archive, tiny.activations, "-n", "1:0", "-o", table]),
            ("lstmscope-dump", dump_cli.main, [archive, text, "--vocabulary", tiny.vocabulary, "-o", dumped]),
        ]:
            assert main([str(a) for a in args]) == 1, command
            assert one_error_line(capsys, command).rstrip("\n").endswith(message)
    assert not table.exists() and not dumped.exists()

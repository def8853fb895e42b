"""lstmscope-dump: a text of one's own through the small real model, in the pipeline's file format."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from lstmscope.activations_file import read_words
from lstmscope.dump_cli import main
from lstmscope.heatmap_cli import main as heatmap_main
from lstmscope.model import load_checkpoint, save_checkpoint
from lstmscope.vocabulary import Vocabulary

from neurons_support import tiny  # noqa: F401 (fixture)
from conftest import run_unprivileged, skip_or_fail


def _words(path, split=False):
    with h5py.File(path) as f:
        return read_words(f, split=split)


def test_a_text_file_gives_the_same_numbers_as_the_pipelines_dump_of_the_same_words(tiny, tmp_path, capsys):
    words = _words(tiny.activations, split=True)
    lines, line = [], []
    for w in words:  # the same stream written as a file: a line per <eos>
        if w == "<eos>":
            lines.append(" ".join(line))
            line = []
        else:
            line.append(w)
    lines.append(" ".join(line))  # the text's last, unfinished line (its <eos> is extra)
    text = tmp_path / "same.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "same.h5"
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 0
    T = len(words)
    assert _words(out, split=True)[:T] == words
    with h5py.File(out) as f, h5py.File(tiny.activations) as g:
        assert f["tokens/ids"].shape[0] == T + 1  # a line per <eos>, the last unfinished one ended by one more
        np.testing.assert_array_equal(f["tokens/ids"][:T], g["tokens/ids"][:])
        for key in ("layer1/h", "layer1/c", "layer2/h", "layer2/c", "log_expectancy"):
            np.testing.assert_allclose(f[key][:T], g[key][:], rtol=0, atol=2e-6, err_msg=key)
        assert f.attrs["format"] == g.attrs["format"] and f.attrs["model"] == g.attrs["model"] == "d0.2_r0"
        assert f.attrs["split"] == "file" and f.attrs["text"] == "same"
        assert f.attrs["text_sha256"] == hashlib.sha256(text.read_bytes()).hexdigest()
        assert json.loads(f.attrs["provenance"])["text_sha256"] == f.attrs["text_sha256"]
    assert capsys.readouterr().out.startswith(f"{out}: ")


def test_words_outside_the_vocabulary_are_named_and_read_as_unk(tiny, tmp_path, capsys):
    text = tmp_path / "probe.txt"
    known = set(json.loads(tiny.vocabulary.read_text())["words"])
    assert {"the", "of", "and", ",", "."} <= known and not {"Zyxwvu", "Qqqqq"} & known
    long = "x" * 5000  # a "word" thousands of characters long (a line without spaces) is listed cut short
    text.write_text(f"the of Zyxwvu .\nZyxwvu and , Qqqqq {long} .\n", encoding="utf-8")
    out = tmp_path / "probe.h5"
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out),
                 "--name", "my-probe"]) == 0
    err = capsys.readouterr().err
    assert (f"lstmscope-dump: note: 4 occurrences of 3 words outside the model's vocabulary, read as <unk>: "
            f"Zyxwvu (2), Qqqqq, {'x' * 39}…\n") in err
    assert "blocks" not in err  # no progress bar where stderr is no terminal (a script's log): the note alone
    read, own = _words(out), _words(out, split=True)
    assert own == f"the of Zyxwvu . <eos> Zyxwvu and , Qqqqq {long} . <eos>".split()
    assert [r for r, w in zip(read, own) if r != w] == ["<unk>"] * 4
    with h5py.File(out) as f:
        assert f.attrs["text"] == "my-probe" and f.attrs["unknown_words"] == 4
    # the other commands take the file as they take the pipeline's
    png = tmp_path / "probe.png"
    assert heatmap_main([str(out), "-n", "2:3", "-e", "-o", str(png)]) == 0 and png.is_file()
    # a word holding what a terminal acts on or does not show is listed with its escapes, not printed raw
    text.write_text("the \x1b[31mred \u200bzero .\n", encoding="utf-8")
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 0
    assert "read as <unk>: \\x1b[31mred, \\u200bzero\n" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a name with a line break or escape: refused
        main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out), "--name",
              "two\nlines"])
    assert stop.value.code == 2 and ("--name 'two\\nlines': holds a line break or another control character"
                                     in capsys.readouterr().err)
    for line, counted in (("the Zyxwvu of Qqqqq .", "2 words"), ("the Zyxwvu .", "1 word")):  # each once: words
        text.write_text(line + "\n", encoding="utf-8")
        assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)]) == 0
        assert f"note: {counted} outside the model's vocabulary, read as <unk>: " in capsys.readouterr().err


def test_the_vocabulary_beside_the_models_is_found(tiny, tmp_path, capsys):
    (tmp_path / "results/models/d0.2_r0").mkdir(parents=True)
    (tmp_path / "results/data").mkdir(parents=True)
    shutil.copy(tiny.checkpoint, tmp_path / "results/models/d0.2_r0/model.pt")
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    out = tmp_path / "t.h5"
    args = [str(tmp_path / "results/models/d0.2_r0/model.pt"), str(text), "-o", str(out)]
    assert main(args) == 1 and not out.exists()  # no results/data/vocabulary.json yet
    assert capsys.readouterr().err.strip().endswith(
        f"{tmp_path}/results/data/vocabulary.json: vocabulary not found (give the model's with --vocabulary)")
    # a damaged copy without its vocabulary says what is wrong with it, not that the vocabulary is missing
    data = bytearray((tmp_path / "results/models/d0.2_r0/model.pt").read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 64])
    damaged = tmp_path / "results/models/d0.2_r0/damaged.pt"
    damaged.write_bytes(bytes(data))
    assert main([str(damaged), str(text), "-o", str(out)]) == 1 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith(f"lstmscope-dump: error: {damaged}: damaged: ") and "vocabulary not found" not in err, err
    shutil.copy(tiny.vocabulary, tmp_path / "results/data/vocabulary.json")
    assert main(args) == 0 and out.is_file()


def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path, capsys):
    good = tmp_path / "t.txt"
    good.write_text("the film .\n", encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 .\n".encode("latin-1"))
    bom = tmp_path / "bom.txt"
    bom.write_text("The film .\n", encoding="utf-8-sig")  # as some editors save UTF-8
    other_vocabulary = tmp_path / "v.json"
    Vocabulary(Vocabulary.load(tiny.vocabulary).words[:-1]).save(other_vocabulary)
    # the model under a vocabulary of its size without <unk> (vocabulary.max_size: null on a corpus that has none):
    # a word outside it has nothing to be read as
    no_unk = tmp_path / "no-unk.json"
    words = ["<nounk>" if w == "<unk>" else w for w in Vocabulary.load(tiny.vocabulary).words]
    Vocabulary(words).save(no_unk)
    no_unk_model = tmp_path / "no-unk.pt"
    model, record = load_checkpoint(tiny.checkpoint)
    save_checkpoint(no_unk_model, model, Vocabulary(words).sha256, extra=record["extra"])
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("The film .\n".encode("utf-16-le"))  # without a byte-order mark: valid UTF-8, a NUL a letter
    zebra = tmp_path / "zebra.txt"
    zebra.write_text("the zebraish film .\n", encoding="utf-8")
    out = tmp_path / "o.h5"
    v = ["--vocabulary", str(tiny.vocabulary)]
    cases = [
        ([str(good), str(tiny.checkpoint), *v], "t.txt: a text file, not a checkpoint; the arguments are CHECKPOINT TEXT"),
        ([str(tiny.activations), str(good), *v],
         "an activations file, not a checkpoint; the arguments are CHECKPOINT TEXT"),
        ([str(tiny.checkpoint), str(tmp_path / "none.txt"), *v], "none.txt: text file not found"),
        ([str(tiny.checkpoint), str(empty), *v],
         "empty.txt: no words to read (the file is empty or holds only blank lines)"),
        ([str(tiny.checkpoint), str(latin), *v], "latin.txt: not UTF-8 text"),
        ([str(tiny.checkpoint), str(bom), *v], "bom.txt: begins with a byte-order mark (U+FEFF)"),
        ([str(tiny.checkpoint), str(utf16), *v], "utf16.txt: holds a NUL character (byte 1), as UTF-16 text without a "
                                                 "byte-order mark does; save it as UTF-8 text"),
        ([str(tiny.checkpoint), str(good), "--vocabulary", str(tmp_path / "none.json")], "none.json: vocabulary"),
        ([str(tiny.checkpoint), str(good), "--vocabulary", str(other_vocabulary)], "trained with another vocabulary"),
        ([str(no_unk_model), str(zebra), "--vocabulary", str(no_unk)],
         f"zebra.txt: word 'zebraish' is not in the vocabulary and the vocabulary has no <unk> ({no_unk})"),
    ]
    for args, message in cases:
        assert main([*args, "-o", str(out)]) == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lstmscope-dump: error: ") and message in err, (args, err)
    missing = tmp_path / "no" / "o.h5"
    assert main([str(tiny.checkpoint), str(good), *v, "-o", str(missing)]) == 1
    assert f"--output {missing}: the folder {tmp_path / 'no'} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny.checkpoint), str(good), *v, "-o", str(tmp_path / "o.png")])
    assert exit_.value.code == 2 and "an HDF5 file, ending in .h5" in capsys.readouterr().err
    for name in ("", " "):  # an unset shell variable: no text without a name in the file and the titles
        with pytest.raises(SystemExit) as exit_:
            main([str(tiny.checkpoint), str(good), *v, "-o", str(out), "--name", name])
        assert exit_.value.code == 2 and "--name: an empty name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bom.txt", "empty.txt", "latin.txt", "no-unk.json",
                                                          "no-unk.pt", "t.txt", "utf16.txt", "v.json", "zebra.txt"]


def test_the_console_script_is_declared():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    if "lstmscope-heatmap" not in scripts:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    assert scripts.get("lstmscope-dump") == "lstmscope.commands:dump"  # which runs dump_cli.main


def test_an_input_that_cannot_be_read_is_named_as_such_not_as_the_output(tiny):
    """A text whose mode refuses reading (run as a user it binds) is named as the input, and nothing is written."""
    base = Path(tempfile.mkdtemp(prefix="lstmscope-unreadable-"))
    try:
        checkpoint, vocabulary = base / "model.pt", base / "vocab.txt"  # readable copies outside root's pytest folder
        shutil.copyfile(tiny.checkpoint, checkpoint)
        shutil.copyfile(tiny.vocabulary, vocabulary)
        text = base / "t.txt"
        text.write_text("the .\n", encoding="utf-8")
        for path in (checkpoint, vocabulary):
            path.chmod(0o644)
        text.chmod(0o000)
        out = base / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        done = run_unprivileged([sys.executable, "-m", "lstmscope.dump_cli", str(checkpoint), str(text),
                                 "--vocabulary", str(vocabulary), "-o", str(out / "o.h5")], base)
        assert done.returncode == 1, done.stderr
        assert done.stderr == f"lstmscope-dump: error: {text}: cannot be read (Permission denied)\n", done.stderr
        assert os.listdir(out) == []
    finally:
        shutil.rmtree(base)


def test_writing_names_the_output_or_the_input_an_error_concerns(tmp_path):
    from lstmscope.cli import writing

    out = str(tmp_path / "fig.png")
    cases = [(OSError(28, "No space left on device", str(tmp_path / ".fig.tmp77.png")),
              f"--output {out}: cannot be written (No space left on device)"),
             (OSError(5, "Input/output error"), f"--output {out}: cannot be written (Input/output error)"),
             (PermissionError(13, "Permission denied", "/elsewhere/in.h5"), "/elsewhere/in.h5: cannot be read "
                                                                             "(Permission denied)")]
    for error, message in cases:
        with pytest.raises(ValueError) as caught:
            with writing("--output", out):
                raise error
        assert str(caught.value) == message


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_names_the_option(tiny, tmp_path, capsys):
    text, out = tmp_path / "probe.txt", tmp_path / "probe.h5"
    text.write_text("the of .\n", encoding="utf-8")
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out),
                 "--device", "cuda"]) == 1
    assert capsys.readouterr().err.strip() == ("lstmscope-dump: error: --device cuda: no CUDA device is available "
                                               "here; use --device cpu (or auto: CUDA where there is one)")
    assert not out.exists()


def test_an_output_cut_short_by_a_full_disk_is_one_line_naming_it_and_leaves_nothing(tiny, tmp_path):
    """A file-size limit makes the write fail as a full disk does (EFBIG for ENOSPC): HDF5's error runs over two
    lines, and h5py closing the file after it raises an error of its own that names no file. (The console script,
    in a process of its own: h5py's half-closed file can crash the process that goes on after it, h5py issue 914;
    a text of several blocks fails while writing one, before the close, and the command ends normally.)"""
    import os
    import resource
    import signal
    import subprocess
    import sys

    try:
        importlib.metadata.distribution("lstmscope")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    text, out = tmp_path / "long.txt", tmp_path / "o.h5"
    text.write_text("the film was shown in the city .\n" * 3000, encoding="utf-8")

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    script = os.path.join(os.path.dirname(sys.executable), "lstmscope-dump")
    r = subprocess.run([script, str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(out)],
                       capture_output=True, text=True, timeout=120, preexec_fn=limited)
    assert r.returncode == 1
    assert r.stderr == f"lstmscope-dump: error: --output {out}: cannot be written (File too large)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.txt"]


def test_a_pipeline_dump_is_not_replaced_and_the_commands_own_file_is(tiny, tmp_path, capsys):
    """Given a pipeline's activations file as --output, the command used to replace it with its own short text;
    Snakemake then took it for the model's dump and rebuilt every stage after it from that text."""
    text = tmp_path / "probe.txt"
    text.write_text("the film .\n", encoding="utf-8")
    pipeline = tmp_path / "test.h5"
    shutil.copy(tiny.activations, pipeline)
    before = pipeline.read_bytes()
    with h5py.File(pipeline, "r") as f:
        split, name = f.attrs["split"], f.attrs["text"]
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(pipeline)]) == 1
    err = capsys.readouterr().err
    assert err == (f"lstmscope-dump: error: --output {pipeline}: an activations file of the pipeline (text {name}, "
                   f"split {split}); this command would replace it with another text: give another file name\n")
    assert pipeline.read_bytes() == before
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\nf = h5py.File(sys.argv[1], 'a')\n"
                               "print('open', flush=True)\ntime.sleep(120)", str(pipeline)], stdout=subprocess.PIPE,
                              text=True)
    try:  # held open for writing by another program (HDF5's lock): still read, still refused
        assert holder.stdout.readline() == "open\n"
        assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(pipeline)]) == 1
    finally:
        holder.kill()
        holder.wait()
    assert "an activations file of the pipeline" in capsys.readouterr().err
    with h5py.File(pipeline, "r") as f:  # (the holder's open for writing touched its header, not its text)
        assert (f.attrs["split"], f.attrs["text"]) == (split, name) and f["tokens/ids"].shape[0] > 4
    cut = tmp_path / "cut.h5"  # an HDF5 file cut short: it could be a pipeline's, so it is not replaced either
    cut.write_bytes(before[:4096])
    assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(cut)]) == 1
    assert "cut.h5: an HDF5 file that cannot be read" in capsys.readouterr().err and cut.stat().st_size == 4096
    own = tmp_path / "probe.h5"  # the command's own file is written again, as before
    for _ in range(2):
        assert main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(own)]) == 0
    with h5py.File(own, "r") as f:
        assert f.attrs["split"] == "file" and f.attrs["n_tokens"] == 4

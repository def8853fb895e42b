"""lstmscope-heatmap: any neuron (or the expectancy) of a real activations file over one passage."""
from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib import image as mpimg

from lstmscope.ablation import run_ablation
from lstmscope.activations_file import open_activations
from lstmscope.heatmap_cli import heatmap_blocks, main

from conftest import digests
from neurons_support import (HIDDEN, TEXT, degenerate, divergence_csv, group_removal_effects,  # noqa: F401
                             other_run_ablation, prose_avoid, prose_window, single_removal_effects, tiny)

ROOT = Path(__file__).resolve().parents[1]


def _expected(path: Path, key: str, rows: slice, column: int | None = None) -> np.ndarray:
    with h5py.File(path, "r") as f:
        data = f[key][rows] if column is None else f[key][rows, column]
    return np.asarray(data, dtype=np.float64)


def _words(path: Path, rows: slice) -> list[str]:
    with h5py.File(path, "r") as f:
        return [w.decode() for w in f["tokens/words"][rows]]


def _assert_refused(activations: Path, out: Path, capsys, args: list[str], message: str) -> str:
    """The command exits 1 with one line on stderr containing ``message`` and writes no ``out``; returns it."""
    assert main([str(activations), "-o", str(out), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, (args, err)
    assert not out.exists()
    return err


def test_blocks_show_the_chosen_neurons_over_one_passage(tiny):
    rows = slice(100, 130)
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(2, 3), (1, 0)], expectancy=True, start=100, tokens=30, scale="range")
    assert [b.label for b in blocks] == ["p", "h", "c", "h", "c"]
    for b in blocks:
        assert b.words == _words(tiny.activations, rows)
    np.testing.assert_array_equal(blocks[0].values, _expected(tiny.activations, "expectancy", rows))
    np.testing.assert_array_equal(blocks[1].values, _expected(tiny.activations, "layer2/h", rows, 3))
    np.testing.assert_array_equal(blocks[2].values, _expected(tiny.activations, "layer2/c", rows, 3))
    np.testing.assert_array_equal(blocks[3].values, _expected(tiny.activations, "layer1/h", rows, 0))
    np.testing.assert_array_equal(blocks[4].values, _expected(tiny.activations, "layer1/c", rows, 0))
    assert "layer 2, neuron 3, tokens 100-129" in blocks[1].title
    assert (blocks.begin, blocks.stop) == (rows.start, rows.stop)
    for b in blocks[1:]:  # range scale: the passage's own minimum and maximum
        assert (b.norm.vmin, b.norm.vmax) == (b.values.min(), b.values.max())
    with open_activations(tiny.activations) as f:
        symmetric = heatmap_blocks(f, [(2, 3)], expectancy=False, start=100, tokens=30, scale="symmetric")
        centred = heatmap_blocks(f, [(2, 3)], expectancy=False, start=100, tokens=30)  # the default: median
    m = np.abs(symmetric[0].values).max()
    assert (symmetric[0].norm.vmin, symmetric[0].norm.vmax) == (-m, m)
    assert len(centred) == 2
    for b, state in zip(centred, ("h", "c")):  # centred on the neuron's median over the whole text, not the passage
        median = np.median(_expected(tiny.activations, f"layer2/{state}", slice(None), 3))
        d = np.abs(b.values - median).max()
        assert (b.norm.vmin, b.norm.vmax) == pytest.approx((median - d, median + d))
        assert b.label == state
        assert b.title.endswith(f"state {state} (grey: its median {median:.3g})".replace("-", "\u2212"))


def test_median_from_centres_a_short_texts_colours_on_another_texts_medians(tiny, degenerate, tmp_path, capsys):
    """A text of one's own of a few tokens is centred on its own few medians, with a note saying so;
    --median-from centres each neuron on its median over another activations file of the same checkpoint."""
    from lstmscope.dump_cli import main as dump_main

    text = tmp_path / "own.txt"
    text.write_text("the ( of ) and , the .\n", encoding="utf-8")
    own = tmp_path / "own.h5"
    assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(own)]) == 0
    capsys.readouterr()
    assert main([str(own), "-n", "2:3", "-o", str(tmp_path / "a.png")]) == 0
    assert ("lstmscope-heatmap: note: the median scale is centred on each neuron's median over the 9 tokens of this "
            "text only") in capsys.readouterr().err
    with open_activations(own) as f, open_activations(tiny.activations) as test:
        blocks = heatmap_blocks(f, [(2, 3)], False, None, 80, median_from=test, median_text="test")
    for b, state in zip(blocks, ("h", "c")):
        values = _expected(own, f"layer2/{state}", slice(None), 3)  # the own text's values
        np.testing.assert_array_equal(b.values, values)
        median = np.median(_expected(tiny.activations, f"layer2/{state}", slice(None), 3))  # the other's centre
        assert median != pytest.approx(np.median(values))
        d = np.abs(values - median).max()
        assert (b.norm.vmin, b.norm.vmax) == pytest.approx((median - d, median + d))
        assert b.title.endswith(f"state {state} (grey: its median {median:.3g} over text test)".replace("-", "\u2212"))
    out = tmp_path / "b.png"
    assert main([str(own), "-n", "2:3", "--median-from", str(tiny.activations), "-o", str(out)]) == 0
    assert out.stat().st_size > 5000 and "note" not in capsys.readouterr().err
    # a pipeline text, however short (the tiny run's), has no text to take the medians from instead: no note
    assert main([str(tiny.activations), "-n", "2:3", "--tokens", "20", "-o", str(out)]) == 0
    assert "note" not in capsys.readouterr().err
    _assert_refused(own, out.with_suffix(".svg"), capsys, ["-n", "2:3", "--median-from", str(degenerate.activations)],
                    f"--median-from {degenerate.activations}: dumped from another checkpoint than {own}")
    bare = tmp_path / "bare.h5"  # a file without the attribute: not taken for the model's
    shutil.copy(tiny.activations, bare)
    with h5py.File(bare, "a") as f:
        del f.attrs["checkpoint_sha256"]
    _assert_refused(own, out.with_suffix(".svg"), capsys, ["-n", "2:3", "--median-from", str(bare)],
                    f"--median-from {bare}: {bare} has no checkpoint_sha256, so the two cannot be told to be one "
                    "model's")
    for extra, said in ((["-n", "2:3", "--scale", "range"], "--median-from centres the median scale: not with "
                                                             "--scale range"),
                        (["-e"], "--median-from centres the neurons' colours: give --neuron LAYER:INDEX too")):
        with pytest.raises(SystemExit) as stop:
            main([str(own), "-o", str(tmp_path / "c.png"), "--median-from", str(tiny.activations), *extra])
        assert stop.value.code == 2 and said in capsys.readouterr().err


def test_a_short_text_of_ones_own_is_drawn_whole_and_of_a_longer_one_the_drawn_tokens_are_said(tiny, tmp_path,
                                                                                              monkeypatch, capsys):
    """A paragraph of one's own was drawn 80 of its words at a time, silently leaving out the rest; up to
    WHOLE_OWN_TEXT tokens it is now drawn whole unless --start/--passage is given, and of a longer one the command
    says which tokens it drew."""
    import lstmscope.heatmap_cli as cli
    from lstmscope.activations_file import read_words
    from lstmscope.dump_cli import main as dump_main

    drawn = []
    monkeypatch.setattr(cli, "draw_blocks_to", lambda blocks, *a, **k: drawn.append(blocks))
    files = {}
    for name, sentences in (("short", 10), ("long", 45)):  # 13 words and <eos> a line: 140 and 630 tokens
        text = tmp_path / f"{name}.txt"
        text.write_text("the film was released in 1999 , and it was a success .\n" * sentences, encoding="utf-8")
        files[name] = tmp_path / f"{name}.h5"
        assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary),
                          "-o", str(files[name])]) == 0
    capsys.readouterr()
    with open_activations(files["short"]) as f, open_activations(files["long"]) as g:
        short, long = read_words(f), read_words(g)
    assert len(short) <= cli.WHOLE_OWN_TEXT < len(long)
    out = str(tmp_path / "x.png")
    assert main([str(files["short"]), "-n", "2:3", "-e", "-o", out]) == 0
    assert all(b.words == short for b in drawn[-1]) and "tokens 0-" not in capsys.readouterr().err
    assert drawn[-1][0].title.startswith(f"tokens 0-{len(short) - 1}:")
    assert main([str(files["short"]), "-n", "2:3", "--around", "c", "-o", out]) == 0  # the one passage that long
    assert drawn[-1][0].words == short
    assert main([str(files["short"]), "-n", "2:3", "--passage", "30", "-o", out]) == 0  # asked: as asked
    assert len(drawn[-1][0].words) == 30 and "drawn" not in capsys.readouterr().err
    assert main([str(files["long"]), "-n", "2:3", "-o", out]) == 0
    first, last = map(int, re.search(r"tokens (\d+)-(\d+) of this text's 0-(\d+) drawn", capsys.readouterr().err)
                      .group(1, 2))
    assert last - first + 1 == cli.DEFAULT_TOKENS and drawn[-1][0].words == long[first:last + 1]
    assert main([str(files["long"]), "-n", "2:3", "--start", "0", "-o", out]) == 0  # a part chosen: no note
    assert "drawn" not in capsys.readouterr().err


@pytest.mark.parametrize("around,state", [(None, "h"), ("h", "h"), ("c", "c")])
def test_default_passage_is_where_the_first_neuron_is_most_active(tiny, around, state):
    column = _expected(tiny.activations, f"layer2/{state}", slice(None), 7)
    start = prose_window(column, _words(tiny.activations, slice(None)), 25)  # outside the section headings
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(2, 7), (1, 2)], expectancy=True, start=None, tokens=25, around=around)
    assert blocks[0].words == _words(tiny.activations, slice(start, start + 25))
    np.testing.assert_array_equal(blocks[3].values, _expected(tiny.activations, "layer1/h", slice(start, start + 25), 2))
    if around == "c":  # the cell state's passage is another than the hidden state's: around c was followed
        h_start = prose_window(_expected(tiny.activations, "layer2/h", slice(None), 7),
                               _words(tiny.activations, slice(None)), 25)
        assert h_start != start


@pytest.mark.parametrize("neurons,start,around,message", [
    ([(2, 0)], 5, "c", "--start 5 and --around c both choose the passage: give one of them"),
    ([], None, "h", "--around h chooses the passage by the first --neuron's h: give --neuron"),
    ([], None, "effect", "--around effect chooses the passage by a removal's effect: give --neuron or --group"),
    ([(2, 0)], None, "effect", "--around effect needs --ablation: the effect of removing the first neuron"),
])
def test_the_library_refuses_an_around_that_chooses_nothing_as_the_command_does(tiny, neurons, start, around, message):
    """heatmap_blocks (the command's and lstmscope-ablate's --heatmap drawing) refuses what the command's options
    refuse before opening the file."""
    with open_activations(tiny.activations) as f, pytest.raises(ValueError, match=re.escape(message)):
        heatmap_blocks(f, neurons, expectancy=True, start=start, tokens=25, around=around)


def test_the_passage_avoids_section_headings_unless_headings_is_given(tiny, monkeypatch, tmp_path):
    words = _words(tiny.activations, slice(None))
    heads = prose_avoid(words)
    clean = np.convolve(heads.astype(int), np.ones(25, dtype=int), mode="valid") == 0
    sums = {j: np.convolve(np.abs(_expected(tiny.activations, "layer2/h", slice(None), j)), np.ones(25), mode="valid")
            for j in range(HIDDEN)}
    # a neuron of the real model that is most active over a heading line
    j = next(j for j, s in sums.items() if heads[int(np.argmax(s)):int(np.argmax(s)) + 25].any())
    anywhere, prose = int(np.argmax(sums[j])), int(np.argmax(np.where(clean, sums[j], -1)))
    import lstmscope.heatmap_cli as cli

    drawn = []
    monkeypatch.setattr(cli, "draw_blocks_to", lambda blocks, *a, **k: drawn.append(blocks))
    for extra, start in (([], prose), (["--headings"], anywhere)):
        out = str(tmp_path / "x.png")
        assert main([str(tiny.activations), "-n", f"2:{j}", "--tokens", "25", "-o", out, *extra]) == 0
        assert drawn.pop()[0].words == words[start:start + 25], extra


def test_expectancy_alone_starts_at_the_text_start_and_a_passage_stops_at_its_end(tiny):
    with open_activations(tiny.activations) as f:
        (alone,) = heatmap_blocks(f, [], expectancy=True, start=None, tokens=12)
        tail_blocks = heatmap_blocks(f, [(1, 1)], expectancy=False, start=TEXT.tokens - 10, tokens=30)
    tail = tail_blocks[0]
    assert (tail_blocks.begin, tail_blocks.stop) == (TEXT.tokens - 10, TEXT.tokens)  # cut short by the text's end
    assert alone.words == _words(tiny.activations, slice(0, 12)) and np.isnan(alone.values[0])
    assert len(tail.words) == 10 and f"tokens {TEXT.tokens - 10}-{TEXT.tokens - 1}" in tail.title


def test_expectancy_floor_is_the_pipelines_by_default_auto_or_any_probability(tiny, monkeypatch, tmp_path, capsys):
    """--expectancy-floor: by default the pipeline's heatmap.expectancy_floor (so a passage's colours compare with
    Fig. 4.1's), `auto` the passage's own smallest p (at most 0.1), or a probability; anything else a usage error."""
    import yaml

    import lstmscope.heatmap_cli as cli

    drawn = []
    monkeypatch.setattr(cli, "draw_blocks_to", lambda blocks, *a, **k: drawn.append(blocks))
    p = _expected(tiny.activations, "expectancy", slice(100, 130))
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    pipeline = schema["properties"]["heatmap"]["properties"]["expectancy_floor"]["default"]
    out = str(tmp_path / "e.png")
    for extra, vmin in (([], pipeline), (["--expectancy-floor", "auto"], min(p.min(), 0.1)),
                        (["--expectancy-floor", "0.002"], 0.002)):
        assert main([str(tiny.activations), "-e", "--start", "100", "--tokens", "30", "-o", out, *extra]) == 0
        (block,) = drawn.pop()
        assert block.norm.vmin == pytest.approx(vmin, rel=1e-9) and block.norm.vmax == 1.0, extra
        np.testing.assert_array_equal(block.values, np.maximum(p, vmin))
    for bad in ("0", "1", "-0.5", "small"):
        with pytest.raises(SystemExit) as exit_:
            main([str(tiny.activations), "-e", "--expectancy-floor", bad, "-o", out])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"--expectancy-floor: {bad!r}: give a probability between 0 and 1" in err


def test_the_command_writes_the_figure_in_the_format_of_its_suffix(tiny, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name in ("n.png", "n.svg", "n.pdf"):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "lstmscope.heatmap_cli", str(tiny.activations), "-n", "2:3",
                               "-n", "1:4", "-e", "--tokens", "40", "--scale", "range", "-o", str(out)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(out)
    img = mpimg.imread(tmp_path / "n.png")
    assert img.shape[0] > 300 and img.shape[1] > 800  # five stacked paragraphs of 40 words
    assert (tmp_path / "n.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "n.pdf").read_bytes().startswith(b"%PDF")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_the_console_script_is_declared():
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("lstmscope-heatmap") == "lstmscope.commands:heatmap"  # which runs heatmap_cli.main


BAD = [
    (["-n", "2x"], "--neuron '2x': expected LAYER:INDEX"),
    (["-n", "1:\u00b2"], "--neuron '1:\u00b2': expected LAYER:INDEX"),  # a superscript 2 is a digit to str.isdigit
    (["-n", "1:\u0663"], "--neuron '1:\u0663': expected LAYER:INDEX"),  # so is an Arabic-Indic 3, and int() reads it
    # a layer below 1 reaches the command's own check, not argparse's "expected one argument"
    (["-n", "-1:1"], "--neuron '-1:1': expected LAYER:INDEX"),
    (["--neuron", "-2:0"], "--neuron '-2:0': expected LAYER:INDEX"),
    (["-n", "2:0", "-g", "-1:top"], "--group '-1:top': expected LAYER:top or LAYER:random"),
    (["-n", "2:4", "-n", "1:0", "-n", "2:04"], "--neuron given twice: 2:4"),  # however it is written
    (["-n", "2:4", "-g", "1:top", "-g", "1:top"], "--group given twice: 1:top"),
    (["-n", "3:0"], "activations.h5: layer 3 does not exist; the file has layers 1..2"),
    (["-n", "2:0", "-n", f"2:{HIDDEN}"], f"activations.h5: neuron {HIDDEN} does not exist in layer 2; "
                                          f"it has neurons 0..{HIDDEN - 1}"),
    (["-n", "2:0", "--start", str(TEXT.tokens)], f"--start {TEXT.tokens} is outside the text "
                                                  f"(tokens 0..{TEXT.tokens - 1})"),
    ([], "nothing to draw: give --neuron LAYER:INDEX"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tiny, tmp_path, capsys, args, message):
    err = _assert_refused(tiny.activations, tmp_path / "x.png", capsys, args, message)
    assert err.startswith("lstmscope-heatmap: error: ")
    assert list(tmp_path.iterdir()) == []


USELESS = [  # an option that would change nothing: a usage error (exit 2), as an --around that chooses nothing
    (["-e", "--scale", "range"], "--scale range colours the neurons' h and c: give --neuron LAYER:INDEX too"),
    (["-g", "2:top", "--scale", "median"], "--scale median colours the neurons' h and c: give --neuron"),
    (["-n", "2:0", "--expectancy-floor", "1e-3"], "--expectancy-floor sets the expectancy's colour scale: give "
                                                  "--expectancy too"),
    (["-n", "2:0", "--expectancy-floor", "auto"], "--expectancy-floor sets the expectancy's colour scale"),
    (["-n", "2:0", "--start", "5", "--headings"], "--headings lets a chosen passage hold section headings: not with "
                                                  "--start 5, which gives the passage"),
    (["-e", "--headings"], "--headings lets the passage a --neuron or --group chooses hold section headings: give one"),
    # an --around that would choose nothing (it exited 1, after the file was opened, where the others exit 2)
    (["-n", "2:0", "--start", "5", "--around", "c"], "--start 5 and --around c both choose the passage: give one"),
    (["-e", "--around", "h"], "--around h chooses the passage by the first --neuron's h: give --neuron"),
    (["-e", "--around", "effect"], "--around effect chooses the passage by a removal's effect: give --neuron or "
                                   "--group with --ablation"),
    (["-n", "1:0", "--around", "effect"], "--around effect needs --ablation"),
    (["-g", "2:top", "-a", "g.h5", "--around", "c"], "--around c chooses the passage by the first --neuron's c: "
                                                      "give --neuron"),
]


@pytest.mark.parametrize("args,message", USELESS, ids=[" ".join(a) for a, _ in USELESS])
def test_an_option_that_would_change_nothing_is_a_usage_error(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    with pytest.raises(SystemExit) as stop:
        main([str(tiny.activations), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"lstmscope-heatmap: error: {message}" in err and not out.exists()


def test_a_figure_a_pipeline_job_drew_is_not_replaced_one_of_the_commands_is(tiny, tmp_path, capsys, monkeypatch):
    """-o over a figure of the run (results/figures/...) replaced it, and the run and its report then showed the
    command's figure as the job's. A PNG or SVG whose metadata names a pipeline rule is refused before anything is
    drawn; a figure of the command's own is replaced."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from lstmscope import figures

    monkeypatch.setattr(figures, "_job", None)  # the record is put back as it was after the test
    figures.record_job(SimpleNamespace(rule="text_heatmaps", wildcards={"model": "m"}, params={}, input=[]))
    png, svg = tmp_path / "heatmap.png", tmp_path / "heatmap.svg"
    figures.save_figure(plt.figure(), png, svg)
    figures._job = None  # this process's next figures are no job's, as in the command
    before = digests((png, svg))
    for out in (png, svg):
        assert main([str(tiny.activations), "-n", "2:0", "--passage", "10", "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (f"--output {out}: a figure the pipeline's rule text_heatmaps drew (its "
                                          "metadata says so); this command would replace it") in err, err
    assert digests((png, svg)) == before
    own = tmp_path / "own.svg"
    for _ in range(2):  # drawn, then drawn again over its own
        assert main([str(tiny.activations), "-n", "2:0", "--passage", "10", "-o", str(own)]) == 0


def test_a_png_too_large_for_pillow_is_still_read_for_its_record(tiny, tmp_path, capsys):
    """-o over a PNG of more pixels than Pillow's limit (the command's own at --passage 5000 --dpi 1200, 4.4
    gigapixels) ended in a DecompressionBombError's traceback: only its text chunks are read now, never its pixels,
    wherever they lie (Pillow's info holds only those before the pixels). Files that claim 20 000 x 20 000 pixels:
    one whose text names a pipeline rule is refused, one without is replaced."""
    import json
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def png(width: int, height: int, text: bytes = b"", after: bytes = b"") -> bytes:
        """A header, text chunks ``text`` before the pixels, an image data chunk (not a valid one: never read), and
        ``after`` it (where a tool that rewrites metadata may put them)."""
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + text
                + chunk(b"IDAT", b"\0" * 64) + after + chunk(b"IEND", b""))

    record = json.dumps({"rule": "text_heatmaps", "wildcards": {}}).encode()
    files = {"tEXt before the pixels": png(20000, 20000, text=chunk(b"tEXt", b"Description\0" + record)),
             "zTXt after them": png(20000, 20000, after=chunk(b"zTXt", b"Description\0\0" + zlib.compress(record))),
             "iTXt after them": png(20000, 20000, after=chunk(b"iTXt", b"Description\0\1\0en\0\0"
                                                                       + zlib.compress(record)))}
    own = tmp_path / "own.png"
    own.write_bytes(png(20000, 20000))
    for name, data in files.items():
        job = tmp_path / "job.png"
        job.write_bytes(data)
        assert main([str(tiny.activations), "-n", "2:0", "--passage", "10", "-o", str(job)]) == 1, name
        err = capsys.readouterr().err
        assert err == (f"lstmscope-heatmap: error: --output {job}: a figure the pipeline's rule text_heatmaps drew "
                       "(its metadata says so); this command would replace it: give another file name\n"), (name, err)
        assert job.read_bytes() == data
    assert main([str(tiny.activations), "-n", "2:0", "--passage", "10", "-o", str(own)]) == 0
    from PIL import Image

    with Image.open(own) as image:  # the command's figure in its place
        assert image.size[0] < 20000 and image.size[1] < 20000


@pytest.mark.parametrize("value", [504.0, 1e30, -1.5])
def test_an_h_no_lstm_has_is_refused_as_a_nan_is(tiny, tmp_path, capsys, value):
    """A damaged file's h of 504 or 1e30 (finite: read_neurons passes it) was drawn: the passage chosen around it, the
    colour bar stretched to 1000000000000000019884624838656. |h| < 1 in any LSTM (h = o tanh c), so it is refused in
    one line naming the token and neuron, whether the passage is chosen on it, drawn, or the median scale reads it. A
    c that large is an LSTM's possible value and is drawn."""
    import shutil

    damaged = tmp_path / "bad.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f["layer2/h"][30, 3] = value
        f["layer2/c"][31, 4] = value
    said = (f"lstmscope-heatmap: error: {damaged}: layer2/h of token 30, neuron 3 is {value:g}, which no LSTM's h is "
            "(|h| < 1: the file is damaged; dump it again)\n")
    out = tmp_path / "h.png"
    for how in (["--start", "0"], ["--around", "h", "--scale", "symmetric"], []):
        assert main([str(damaged), "-n", "2:3", *how, "--passage", "60", "-o", str(out)]) == 1
        assert capsys.readouterr().err == said and not out.exists()
    assert main([str(damaged), "-n", "2:4", "--start", "0", "--passage", "60", "-o", str(out)]) == 0


def test_a_png_of_more_pixels_than_image_viewers_open_is_refused_before_it_is_drawn(tiny, tmp_path, capsys):
    """--passage 5000 --dpi 1200, each within its limit, drew 4.4 gigapixels (235 MB), and ran out of memory under a
    limit. A PNG laid out larger than heatmap.MAX_PIXELS is refused in one line before it is drawn; the same figure
    as SVG (vectors) or at a lower dpi is drawn."""
    from PIL import Image

    from lstmscope.heatmap import MAX_PIXELS

    out = tmp_path / "wide.png"
    args = [str(tiny.activations), "-n", "2:3", "-e", "--start", "0", "--passage", "300", "--width", "500"]
    assert main([*args, "--dpi", "1200", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    said = re.fullmatch(rf"lstmscope-heatmap: error: {re.escape(str(out))}: (\d+) x (\d+) pixels at 1200 dpi, \d+ "
                        r"megapixels; at most 89.5 \(Pillow's limit\): draw fewer tokens, at a lower dpi, "
                        r"or as SVG or PDF\n", err)
    assert said and int(said[1]) * int(said[2]) > MAX_PIXELS, err
    assert list(tmp_path.iterdir()) == []
    assert main([*args, "--dpi", "1200", "-o", str(tmp_path / "wide.svg")]) == 0
    assert main([*args, "--dpi", "150", "-o", str(out)]) == 0
    with Image.open(out) as image:  # the size said, at 150 dpi rather than 1200 (the saved box trims the margins)
        width, height = image.size
    assert abs(width - int(said[1]) / 8) < 0.05 * width and abs(height - int(said[2]) / 8) < 0.05 * height


def test_missing_file_and_unknown_format(tmp_path, capsys):
    assert main([str(tmp_path / "none.h5"), "-n", "1:0", "-o", str(tmp_path / "x.png")]) == 1
    assert "none.h5: activations file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "none.h5"), "-n", "1:0", "-o", str(tmp_path / "x.jpg")])
    assert exit_.value.code == 2 and "the suffix must be one of .png, .svg, .pdf" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- --ablation: the effect of a removal
ABLATED = 150  # tokens the ablation reads, of the text's 400


@pytest.fixture(scope="module")
def ablation(tiny, divergence_csv, tmp_path_factory):
    """A real ablation of the shared model (1 top and 1 random neuron per layer, first 150 tokens), and the
    neurons it removed on their own: [(layer, neuron, group)] in the file's order."""
    folder = tmp_path_factory.mktemp("heatmap-ablation")
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, folder / "a.h5", neurons=1,
                 random=1, seed=3, max_tokens=ABLATED)
    with h5py.File(folder / "a.h5") as f:
        removed = [(int(layer), int(row[0]), g.decode()) for layer, row, g in
                   zip(f["ablation/layer"][:], f["ablation/neurons"][:], f["ablation/group"][:])]
    return folder / "a.h5", removed


def _padded(effect: np.ndarray) -> np.ndarray:
    """An effect on the words an ablation read, NaN after them to the text's end."""
    return np.concatenate([effect, np.full(TEXT.tokens - len(effect), np.nan)])


def _effect(path: Path, layer: int, neuron: int) -> np.ndarray:
    """The removal's effect on each word straight from the file, NaN after the words the ablation read."""
    return _padded(single_removal_effects(path)[(layer, neuron)])


def test_ablation_adds_each_neurons_removal_effect_below_its_h_and_c(tiny, ablation):
    path, removed = ablation
    (l1, j1, g1), (l2, j2, g2) = removed[0], removed[-1]  # a top neuron of layer 1, a random one of layer 2
    assert (l1, g1, l2, g2) == (1, "top", 2, "random")
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(l1, j1), (l2, j2)], expectancy=False, start=120, tokens=60, ablation=str(path))
    assert [b.label for b in blocks] == ["h", "c", "effect (nats)"] * 2
    rows = slice(120, 180)  # crosses the end of what the ablation read: those words have no value (grey)
    for block, (layer, j) in ((blocks[2], (l1, j1)), (blocks[5], (l2, j2))):
        assert block.words == _words(tiny.activations, rows)
        np.testing.assert_allclose(block.values, _effect(path, layer, j)[rows], rtol=0, atol=1e-12)
        assert np.isnan(block.values[ABLATED - 120:]).all() and np.isfinite(block.values[:ABLATED - 120]).all()
        m = np.nanmax(np.abs(block.values))
        assert (block.norm.vmin, block.norm.vmax) == (-m, m)
    title = blocks[5].title
    assert f"neuron {j2} removed (random, h held at its mean over the words read; perplexity" in title
    assert f"layer 1, neuron {j1} removed (top-KL of h, h held at its mean" in blocks[2].title  # the file's ranking
    assert f"first {ABLATED} words" in title
    # an ablation file from before ablation.method held its units at 0, and says so
    older = path.parent / "older.h5"
    shutil.copy(path, older)
    with h5py.File(older, "a") as f:
        del f.attrs["method"]
    with open_activations(tiny.activations) as f:
        (*_, effect) = heatmap_blocks(f, [(l2, j2)], expectancy=False, start=120, tokens=60, ablation=str(older))
    assert f"neuron {j2} removed (random, h held at 0; perplexity" in effect.title
    np.testing.assert_array_equal(blocks[3].values, _expected(tiny.activations, f"layer{l2}/h", rows, j2))
    # --around effect: the passage where the first neuron's removal matters most
    start = prose_window(_effect(path, l2, j2)[:ABLATED], _words(tiny.activations, slice(0, ABLATED)), 25)
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(l2, j2)], expectancy=True, start=None, tokens=25, around="effect",
                                ablation=str(path))
    assert [b.label for b in blocks] == ["p", "h", "c", "effect (nats)"]
    assert blocks[0].words == _words(tiny.activations, slice(start, start + 25)) and start + 25 <= ABLATED
    h_start = prose_window(_expected(tiny.activations, f"layer{l2}/h", slice(None), j2),
                           _words(tiny.activations, slice(None)), 25)
    assert h_start != start  # around the effect, not around h (the default)
    # a passage so long that every one among the words read holds a heading: still among those words (where the
    # effect has values), not past them where a window might hold no heading but also no value
    words = _words(tiny.activations, slice(None))
    heads = np.convolve(prose_avoid(words).astype(int), np.ones(100, dtype=int), mode="valid")
    assert heads[:ABLATED - 99].min() > 0 and heads.min() == 0
    with open_activations(tiny.activations) as f:
        (long, *_) = heatmap_blocks(f, [(l2, j2)], expectancy=False, start=None, tokens=100, around="effect",
                                    ablation=str(path))
    begin = int(long.title.split("tokens ")[1].split("-")[0])
    assert begin + 100 <= ABLATED
    # chosen by h (the default), with the removal drawn: the most active passage among the words read, though the
    # neuron's h is larger after them
    words = _words(tiny.activations, slice(None))
    moves = [(lay, j) for lay, j, _ in removed
             if prose_window(_expected(tiny.activations, f"layer{lay}/h", slice(None), j), words, 25) + 25 > ABLATED]
    assert moves, "no removed neuron is most active after the words the ablation read"
    lay, j = moves[0]
    within = prose_window(_expected(tiny.activations, f"layer{lay}/h", slice(0, ABLATED), j), words[:ABLATED], 25)
    with open_activations(tiny.activations) as f:
        (h_block, *_) = heatmap_blocks(f, [(lay, j)], expectancy=False, start=None, tokens=25, ablation=str(path))
    assert h_block.words == words[within:within + 25] and within + 25 <= ABLATED


def test_the_command_draws_a_removal(tiny, ablation, tmp_path, monkeypatch):
    """--ablation adds the neuron's removal below its h and c: the effect on each word of the passage drawn, as the
    ablation file holds it, and the figure is drawn (three coloured paragraphs, not a blank page)."""
    import lstmscope.heatmap_cli as cli

    path, removed = ablation
    out = tmp_path / "removed.png"
    layer, j, _ = removed[0]
    drawn, draw = [], cli.draw_blocks_to
    monkeypatch.setattr(cli, "draw_blocks_to", lambda blocks, *a, **k: (drawn.append(blocks), draw(blocks, *a, **k)))
    assert main([str(tiny.activations), "-n", f"{layer}:{j}", "--ablation", str(path), "--around", "effect",
                 "-o", str(out)]) == 0
    (blocks,) = drawn
    assert [b.label for b in blocks] == ["h", "c", "effect (nats)"]
    begin, stop = (int(t) for t in re.search(r"tokens (\d+)-(\d+)", blocks[0].title).groups())
    rows = slice(begin, stop + 1)
    assert blocks[2].words == blocks[0].words == _words(tiny.activations, rows)
    np.testing.assert_allclose(blocks[2].values, _effect(path, layer, j)[rows], rtol=0, atol=1e-12)
    assert np.isfinite(blocks[2].values).all()  # around the effect: among the words the ablation read
    image = mpimg.imread(out)
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05


def test_bad_ablation_input_is_a_one_line_error_and_writes_nothing(tiny, ablation, tmp_path, capsys):
    path, removed = ablation
    kept = next(j for j in range(HIDDEN) if (2, j) not in {(lay, n) for lay, n, _ in removed})
    listed = " ".join(f"{lay}:{n}" for lay, n, _ in sorted(removed))
    other = tmp_path / "other.h5"
    other.write_bytes(path.read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["text"] = "valid"
    cases = [
        (["-n", f"2:{kept}", "--ablation", str(path)],
         f"a.h5: neuron 2:{kept} was not removed on its own there; removed on their own: {listed}"),
        (["-n", "1:0", "--ablation", str(other)], "other.h5 is the ablation of model d0.2_r0, text valid, not of "
                                                  "model d0.2_r0, text test"),
        (["-n", "1:0", "--ablation", str(tmp_path / "none.h5")], "none.h5: ablation file not found"),
        (["-e", "--ablation", str(path)], "--ablation draws the effect of removing a neuron or group: give --neuron"),
        (["-n", f"{removed[0][0]}:{removed[0][1]}", "--ablation", str(path), "--start", str(ABLATED)],
         f"a.h5: the ablation read the first {ABLATED} words only; the passage (tokens {ABLATED}-"),
    ]
    for args, message in cases:
        _assert_refused(tiny.activations, tmp_path / "x.png", capsys, args, message)


@pytest.fixture(scope="module")
def group_ablation(tiny, divergence_csv, tmp_path_factory):
    """A real ablation with groups: 2 top and 2 random neurons per layer, each group also removed together."""
    folder = tmp_path_factory.mktemp("heatmap-group-ablation")
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, folder / "g.h5", neurons=2,
                 random=2, seed=3, max_tokens=ABLATED)
    return folder / "g.h5"


def test_group_adds_the_joint_effect_of_a_layers_neurons_removed_together(tiny, group_ablation, ablation, tmp_path,
                                                                          capsys):
    groups = group_removal_effects(group_ablation)
    assert sorted(groups) == [(1, "random all"), (1, "top all"), (2, "random all"), (2, "top all")]
    padded = {k: _padded(e) for k, (_, e) in groups.items()}
    # without --neuron and --start, the passage is where the first group's effect is largest
    start = prose_window(padded[(2, "top all")][:ABLATED], _words(tiny.activations, slice(0, ABLATED)), 25)
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [], expectancy=False, start=None, tokens=25, ablation=str(group_ablation),
                                groups=[(2, "top all"), (1, "random all")])
    assert [b.label for b in blocks] == ["effect (nats)"] * 2
    assert blocks[0].words == _words(tiny.activations, slice(start, start + 25))
    for block, key in zip(blocks, [(2, "top all"), (1, "random all")]):
        np.testing.assert_allclose(block.values, padded[key][start:start + 25], rtol=0, atol=1e-12)
    with open_activations(tiny.activations) as f:  # --around effect says the same; h or c has no neuron to read
        (effect, _) = heatmap_blocks(f, [], expectancy=False, start=None, tokens=25, around="effect",
                                     ablation=str(group_ablation), groups=[(2, "top all"), (1, "random all")])
    assert effect.words == blocks[0].words
    top = " ".join(map(str, groups[(2, "top all")][0]))
    assert (f"layer 2, the 2 top-KL neurons of h ({top}) removed together (h held at its mean over the words read; "
            "perplexity") in blocks[0].title  # (the file's ablation.state: the KL ranking the top neurons came from)
    random = " ".join(map(str, groups[(1, "random all")][0]))
    assert f"layer 1, the 2 random neurons ({random}) removed together" in blocks[1].title
    # the change and its unit stay on one line where the title wraps (a no-break space before "%")
    assert re.search(r"perplexity [+\u2212]\d+\.\d\d\u00a0% without them", blocks[0].title), blocks[0].title
    # after a neuron's blocks (h, c, its own removal's effect), over the same passage
    layer, j = 1, groups[(1, "top all")][0][0]  # a top neuron of layer 1, also removed on its own
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(layer, j)], expectancy=False, start=10, tokens=20, ablation=str(group_ablation),
                                groups=[(1, "top all")])
    assert [b.label for b in blocks] == ["h", "c", "effect (nats)", "effect (nats)"]
    np.testing.assert_allclose(blocks[3].values, padded[(1, "top all")][10:30], rtol=0, atol=1e-12)
    # the command
    out = tmp_path / "together.png"
    assert main([str(tiny.activations), "-g", "2:top", "-g", "2:random", "-a", str(group_ablation), "-o", str(out)]) == 0
    image = mpimg.imread(out)
    assert image.shape[0] > 150 and image[..., :3].std() > 0.05
    cases = [
        (["-g", "2:top"], "--group draws the effect of removing a group of neurons: give --ablation"),
        (["-g", "2:best", "-a", str(group_ablation)], "--group '2:best': expected LAYER:top or LAYER:random"),
        (["-g", "3:top", "-a", str(group_ablation)],
         "g.h5: no group 3:top was removed together there; groups: 1:random 1:top 2:random 2:top"),
        (["-g", "1:top", "-a", str(ablation[0])], "a.h5: no group 1:top was removed together there; groups: none"),
    ]
    for args, message in cases:
        _assert_refused(tiny.activations, tmp_path / "x.png", capsys, args, message)


def test_an_output_that_cannot_be_written_is_refused_before_drawing(tiny, tmp_path, capsys):
    folder = tmp_path / "fig.png"
    folder.mkdir()
    assert main([str(tiny.activations), "-o", str(folder), "-n", "2:0"]) == 1
    err = capsys.readouterr().err
    assert err == f"lstmscope-heatmap: error: --output {folder}: is a folder; give a file name\n"
    missing = tmp_path / "no" / "fig.png"
    _assert_refused(tiny.activations, missing, capsys, ["-n", "2:0"],
                    f"--output {missing}: the folder {tmp_path / 'no'} does not exist")
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"] and list(folder.iterdir()) == []


def test_too_long_a_passage_is_refused_and_a_short_one_at_the_end_is_noted(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny.activations), "-n", "2:0", "--tokens", "5001", "-o", str(tmp_path / "x.png")])  # its earlier name
    assert exit_.value.code == 2 and "--passage 5001: at most 5000 words" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # the other end of the range: the same kind of error
        main([str(tiny.activations), "-n", "2:0", "--passage", "0", "-o", str(tmp_path / "x.png")])
    assert exit_.value.code == 2 and "--passage 0: must be >= 1" in capsys.readouterr().err
    out = tmp_path / "end.png"
    assert main([str(tiny.activations), "-n", "2:0", "--start", str(TEXT.tokens - 30), "--passage", "50",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "the passage ends with the text: 30 of --passage 50 words drawn" in err and out.is_file()
    assert main([str(tiny.activations), "-n", "2:0", "--start", str(TEXT.tokens - 1), "-o", str(out)]) == 0
    assert "the passage ends with the text: 1 of --passage 80 words drawn" in capsys.readouterr().err  # the default's


def test_an_ablation_of_another_checkpoint_of_a_model_named_alike_is_refused(tiny, degenerate, other_run_ablation,
                                                                            tmp_path, capsys):
    """Another run's d0.2_r0 (its checkpoint has units switched off): its removals are not drawn under this one's."""
    other = other_run_ablation
    (layer, j), *_ = single_removal_effects(other)
    _assert_refused(tiny.activations, tmp_path / "x.png", capsys, ["-n", f"{layer}:{j}", "--ablation", str(other)],
                    "other.h5 is the ablation of another checkpoint of model d0.2_r0")
    assert main([str(degenerate.activations), "-n", f"{layer}:{j}", "--ablation", str(other), "--tokens", "20",
                 "-o", str(tmp_path / "own.png")]) == 0  # with its own run's activations


def test_a_dpi_above_the_pipelines_maximum_is_a_usage_error(tiny, tmp_path, capsys):
    """Unbounded, --dpi 100000 ran out of memory drawing (a MemoryError traceback); the bound is figures.dpi's."""
    import yaml

    from lstmscope.heatmap_cli import MAX_DPI

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    assert MAX_DPI == schema["properties"]["figures"]["properties"]["dpi"]["maximum"] == 1200
    for dpi in ("1201", "100000"):
        with pytest.raises(SystemExit) as exit_:
            main([str(tiny.activations), "-n", "2:0", "--dpi", dpi, "-o", str(tmp_path / "x.png")])
        assert exit_.value.code == 2 and f"lstmscope-heatmap: error: --dpi {dpi}: at most 1200\n" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    out = tmp_path / "x.svg"
    assert main([str(tiny.activations), "-n", "2:0", "--dpi", "1200", "--tokens", "10", "-o", str(out)]) == 0
    assert out.is_file()


def test_a_line_wider_than_max_width_is_a_usage_error(tiny, tmp_path, capsys):
    """Unbounded, --width 100000 drew a PNG over a million pixels wide; the largest width allowed still draws."""
    from lstmscope.heatmap_cli import MAX_WIDTH

    out = tmp_path / "x.png"
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny.activations), "-n", "2:0", "--width", str(MAX_WIDTH + 1), "-o", str(out)])
    assert exit_.value.code == 2
    assert f"lstmscope-heatmap: error: --width {MAX_WIDTH + 1}: at most {MAX_WIDTH} characters per line\n" in \
        capsys.readouterr().err
    assert not out.exists()
    assert main([str(tiny.activations), "-n", "2:0", "--width", str(MAX_WIDTH), "--tokens", "40", "-o", str(out)]) == 0
    assert out.is_file()
    for option in ("--dpi", "--width"):  # the one given below 10 named alone, not beside the other's default
        with pytest.raises(SystemExit) as exit_:
            main([str(tiny.activations), "-n", "2:0", option, "9", "-o", str(tmp_path / "y.png")])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.endswith(f"lstmscope-heatmap: error: {option} 9: must be >= 10\n")

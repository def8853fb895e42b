"""lstmscope-heatmap: any neuron (or the expectancy) of a real activations file over one passage."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib import image as mpimg

from lstmscope.activations_file import open_activations
from lstmscope.heatmap_cli import heatmap_blocks, main

from neurons_support import HIDDEN, TEXT, tiny  # noqa: F401  (fixture)


def _expected(path: Path, key: str, rows: slice, column: int | None = None) -> np.ndarray:
    with h5py.File(path, "r") as f:
        data = f[key][rows] if column is None else f[key][rows, column]
    return np.asarray(data, dtype=np.float64)


def _words(path: Path, rows: slice) -> list[str]:
    with h5py.File(path, "r") as f:
        return [w.decode() for w in f["tokens/words"][rows]]


def test_blocks_show_the_chosen_neurons_over_one_passage(tiny):
    rows = slice(100, 130)
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(2, 3), (1, 0)], expectancy=True, start=100, tokens=30, scale="range")
    assert [b.label for b in blocks] == ["p(w_t | w_<t)", "h", "c", "h", "c"]
    for b in blocks:
        assert b.words == _words(tiny.activations, rows)
    np.testing.assert_array_equal(blocks[0].values, _expected(tiny.activations, "expectancy", rows))
    np.testing.assert_array_equal(blocks[1].values, _expected(tiny.activations, "layer2/h", rows, 3))
    np.testing.assert_array_equal(blocks[2].values, _expected(tiny.activations, "layer2/c", rows, 3))
    np.testing.assert_array_equal(blocks[3].values, _expected(tiny.activations, "layer1/h", rows, 0))
    np.testing.assert_array_equal(blocks[4].values, _expected(tiny.activations, "layer1/c", rows, 0))
    assert "layer 2, neuron 3, tokens 100-129" in blocks[1].title
    for b in blocks[1:]:  # range scale: the passage's own minimum and maximum
        assert (b.norm.vmin, b.norm.vmax) == (b.values.min(), b.values.max())
    with open_activations(tiny.activations) as f:
        symmetric = heatmap_blocks(f, [(2, 3)], expectancy=False, start=100, tokens=30)
    m = np.abs(symmetric[0].values).max()
    assert (symmetric[0].norm.vmin, symmetric[0].norm.vmax) == (-m, m)


@pytest.mark.parametrize("around", ["h", "c"])
def test_default_passage_is_where_the_first_neuron_is_most_active(tiny, around):
    column = np.abs(_expected(tiny.activations, f"layer2/{around}", slice(None), 7))
    sums = np.convolve(column, np.ones(25), mode="valid")  # sum of |value| over every 25-token window
    start = int(np.argmax(sums))
    with open_activations(tiny.activations) as f:
        blocks = heatmap_blocks(f, [(2, 7), (1, 2)], expectancy=True, start=None, tokens=25, around=around)
    assert blocks[0].words == _words(tiny.activations, slice(start, start + 25))
    np.testing.assert_array_equal(blocks[3].values, _expected(tiny.activations, "layer1/h", slice(start, start + 25), 2))


def test_expectancy_alone_starts_at_the_text_start_and_a_passage_stops_at_its_end(tiny):
    with open_activations(tiny.activations) as f:
        (alone,) = heatmap_blocks(f, [], expectancy=True, start=None, tokens=12)
        (tail, _) = heatmap_blocks(f, [(1, 1)], expectancy=False, start=TEXT.tokens - 10, tokens=30)
    assert alone.words == _words(tiny.activations, slice(0, 12)) and np.isnan(alone.values[0])
    assert len(tail.words) == 10 and f"tokens {TEXT.tokens - 10}-{TEXT.tokens - 1}" in tail.title


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
    assert scripts.get("lstmscope-heatmap") == "lstmscope.heatmap_cli:main"


BAD = [
    (["-n", "2x"], "--neuron '2x': expected LAYER:INDEX"),
    (["-n", "3:0"], "activations.h5: layer 3 does not exist; the file has layers 1..2"),
    (["-n", "2:0", "-n", f"2:{HIDDEN}"], f"activations.h5: neuron {HIDDEN} does not exist in layer 2; "
                                          f"it has neurons 0..{HIDDEN - 1}"),
    (["-n", "2:0", "--start", str(TEXT.tokens)], f"--start {TEXT.tokens} is outside the text "
                                                  f"(tokens 0..{TEXT.tokens - 1})"),
    (["-n", "2:0", "--tokens", "0"], "--tokens 0: must be >= 1"),
    ([], "nothing to draw: give --neuron LAYER:INDEX"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_input_is_a_one_line_error_and_writes_nothing(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    assert main([str(tiny.activations), "-o", str(out), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstmscope-heatmap: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_unknown_format(tmp_path, capsys):
    assert main([str(tmp_path / "none.h5"), "-n", "1:0", "-o", str(tmp_path / "x.png")]) == 1
    assert "none.h5: activations file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "none.h5"), "-n", "1:0", "-o", str(tmp_path / "x.jpg")])
    assert exit_.value.code == 2 and "the suffix must be one of .png, .svg, .pdf" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

"""lstmscope-ablate: remove chosen neurons of the small real model and report what it loses."""
from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lstmscope.ablation_cli import ablate, effect_blocks, entries_wrapped, main, percent, report
from lstmscope.model import load_checkpoint

from lstmscope.activations import TextSpec, dump_activations
from neurons_support import HIDDEN, TEXT, prose_avoid, prose_window, reference_log_probs, tiny  # noqa: F401 (fixture)
from conftest import digests, skip_or_fail


@pytest.fixture(scope="module")
def short(tiny):
    """The model, and the first 120 tokens of its text (the hand-stepped reference is slow)."""
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:120].astype(np.int64)
        words = [w.decode() for w in f["tokens/words"][:120]]
    return model, ids, words


@pytest.mark.parametrize("method", ["mean", "zero"])
def test_each_neuron_alone_and_all_together_against_the_equations(tiny, short, method):
    model, ids, words = short
    table, got_words, effects = ablate(str(tiny.checkpoint), str(tiny.activations), ["2:3", "1:0", "1:7"],
                                       together=True, max_tokens=120, min_count=2, top_words=3, method=method)
    assert list(table.neurons) == ["2:3", "1:0", "1:7", "2:3 1:0 1:7"] and got_words == words
    assert set(table.method) == {method}  # the table says how the units were held
    intact = reference_log_probs(model, ids)
    with h5py.File(tiny.activations) as f:  # mean: each unit's h held at its mean over the 120 tokens read
        held = {(layer, j): float(f[f"layer{layer}/h"][:120, j].astype(np.float64).mean()) if method == "mean" else 0.0
                for layer, j in [(2, 3), (1, 0), (1, 7)]}
    assert len(effects) == len(table) == 4
    for row, effect, removed in zip(table.itertuples(), effects,
                                    [[(2, 3)], [(1, 0)], [(1, 7)], [(2, 3), (1, 0), (1, 7)]]):
        without = reference_log_probs(model, ids, removed, held)
        np.testing.assert_allclose(effect[1:], (intact - without)[1:], atol=1e-4)
        ppl, base = np.exp(-np.nanmean(without)), np.exp(-np.nanmean(intact))
        assert row.perplexity == pytest.approx(ppl, rel=1e-4) and row.intact_perplexity == pytest.approx(base, rel=1e-4)
        assert row.perplexity_change_pct == pytest.approx(100 * (ppl / base - 1), abs=1e-2)
        assert row.tokens == 120
    blocks = effect_blocks(table, got_words, effects, tokens=30)
    assert len(blocks) == 4 and all(len(b.words) == 30 for b in blocks)
    for row, block in zip(table.itertuples(), blocks):  # the change signed, a true minus sign as on the axes
        change = f"{row.perplexity_change_pct:+.2f}".replace("-", "\u2212")
        assert block.title.startswith(f"without {row.neurons}: perplexity {change}\u00a0%"), block.title
    def starts(blocks):  # one passage for every block: the first removal's
        return [int(b.title.split("tokens ")[1].split("-")[0]) for b in blocks]

    start = prose_window(effects[0], got_words, 30)
    assert starts(blocks) == [start] * 4  # outside the section headings
    # the first removal's largest effect moved into a heading: passed over, unless headings are allowed
    heading = int(np.flatnonzero(prose_avoid(got_words))[0])
    spiked = [effects[0].copy(), *effects[1:]]
    spiked[0][heading] = 100.0
    assert starts(effect_blocks(table, got_words, spiked, tokens=30)) == [prose_window(spiked[0], got_words, 30)] * 4
    largest = int(np.argmax(np.convolve(np.abs(np.nan_to_num(spiked[0])), np.ones(30), "valid")))
    assert starts(effect_blocks(table, got_words, spiked, tokens=30, headings=True)) == [largest] * 4
    assert largest != prose_window(spiked[0], got_words, 30)
    np.testing.assert_array_equal(blocks[3].values, effects[3][start:start + 30])


def test_hold_from_holds_units_at_another_texts_means_and_a_short_text_gets_a_note(tiny, short, tmp_path, capsys):
    """A short text of one's own (a probe): with --method mean a unit was held at its mean over those few tokens.
    --hold-from takes the means of a longer text of the same checkpoint (here the whole 400-token text); a short text
    without it gets a note saying where the means come from."""
    model, ids, _ = short
    probe = tmp_path / "probe.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TextSpec("probe", "test", TEXT.offset, 60), probe,
                     chunk_tokens=64)
    with h5py.File(tiny.activations) as f:
        h = f["layer1/h"][:].astype(np.float64)
    intact = reference_log_probs(model, ids[:60])

    def held_at(j: int, means: np.ndarray) -> np.ndarray:  # the effect of unit j of layer 1 held at means[j]
        return intact - reference_log_probs(model, ids[:60], [(1, j)], {(1, j): means[j]})

    # the unit of layer 1 whose effects held at its mean over the 400 tokens and over the 60 differ most
    held_long = [held_at(j, h.mean(axis=0)) for j in range(h.shape[1])]
    apart = [np.nanmax(np.abs(held_long[j] - held_at(j, h[:60].mean(axis=0)))) for j in range(h.shape[1])]
    j = int(np.argmax(apart))
    assert apart[j] > 2e-4  # twice the check's tolerance below: it tells the two means apart
    table, _, (effect,) = ablate(str(tiny.checkpoint), str(probe), [f"1:{j}"], hold_from=str(tiny.activations))
    reference = held_long[j]
    np.testing.assert_allclose(effect[1:], reference[1:], atol=1e-4)
    assert list(table.method) == ["mean"] and list(table.tokens) == [60]

    assert main([str(tiny.checkpoint), str(probe), "-n", "2:3"]) == 0
    assert ("note: each removed unit is held at its mean over the 60 tokens read only; --hold-from "
            "results/activations/<model>/test.h5") in capsys.readouterr().err
    assert main([str(tiny.checkpoint), str(probe), "-n", "2:3", "--hold-from", str(tiny.activations)]) == 0
    assert "held at its mean" not in capsys.readouterr().err
    other = tmp_path / "other.h5"  # the same text, dumped from another checkpoint
    dump_activations(tiny.dead_checkpoint, tiny.vocabulary, tiny.split, TextSpec("o", "test", TEXT.offset, 60), other,
                     chunk_tokens=64)
    capsys.readouterr()  # the dump's progress bar
    for args, message in [(["--hold-from", str(tiny.activations), "--method", "zero"],
                           r"--hold-from .*: the means it gives are for --method mean, not zero$"),
                          (["--hold-from", str(other)],
                           r"--hold-from .* was dumped from another checkpoint than .*: its means are another "
                           r"model's$")]:
        assert main([str(tiny.checkpoint), str(probe), "-n", "2:3", *args]) == 1
        err = capsys.readouterr().err.strip()
        assert re.search(message, err) and "\n" not in err, err


def test_the_command_prints_the_table_and_writes_csv_and_heatmap(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # the terminal's width, which the word lists are broken within
    csv, png = tmp_path / "t.csv", tmp_path / "e.png"
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "2:3", "-n", "2:5", "--together",
                 "--tokens", "200", "-o", str(csv), "--heatmap", str(png), "--passage", "40"]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(csv)
    assert list(table.neurons) == ["2:3", "2:5", "2:3 2:5"]
    for row in table.itertuples():  # each ablation's line: its neurons, perplexity and change
        assert (f"without {row.neurons}: perplexity {row.perplexity:.1f}, {percent(row.perplexity_change_pct)} %"
                in out), out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert png.stat().st_size > 5000
    # its provenance beside it, as beside the pipeline's tables: the table's and the inputs' SHA-256, the settings
    import hashlib
    import json

    record = json.loads((tmp_path / "t.csv.provenance.json").read_text())
    assert record["table_sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
    assert record["inputs"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
                                for p in (tiny.checkpoint, tiny.activations)}
    assert record["command"] == "lstmscope-ablate" and record["settings"]["neurons"] == ["2:3", "2:5"]
    assert record["settings"]["together"] is True and record["settings"]["tokens"] == 200
    assert record["git_commit"] and record["numpy"]
    import h5py

    with h5py.File(tiny.activations) as f:  # the model the numbers are of, as the dump recorded it
        dumped = json.loads(f.attrs["provenance"])
    assert dumped["model"] and record["models"] == {dumped["model"]: {
        "dropout": dumped["dropout"], "replicate": dumped["replicate"], "seed": dumped["seed"],
        "checkpoint_sha256": hashlib.sha256(tiny.checkpoint.read_bytes()).hexdigest()}}


def test_the_heatmap_of_a_short_text_of_ones_own_holds_it_whole(tiny, tmp_path, monkeypatch):
    """As lstmscope-heatmap draws it: a text of one's own of at most WHOLE_OWN_TEXT tokens is drawn whole, not the 80
    tokens where the effect is largest (a pipeline text, however short, keeps the default passage)."""
    from lstmscope import heatmap
    from lstmscope.dump_cli import main as dump_main
    from lstmscope.heatmap_cli import WHOLE_OWN_TEXT

    drawn = []
    monkeypatch.setattr(heatmap, "draw_blocks_to", lambda blocks, *a, **k: drawn.append(blocks))
    text, own = tmp_path / "own.txt", tmp_path / "own.h5"
    text.write_text("the film was released in 1999 , and it was a success .\n" * 10, encoding="utf-8")  # 140 tokens
    assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(own)]) == 0
    with h5py.File(own) as f:
        words = [w.decode() for w in f["tokens/words"][:]]
    assert 80 < len(words) <= WHOLE_OWN_TEXT
    png = str(tmp_path / "e.png")
    assert main([str(tiny.checkpoint), str(own), "-n", "2:3", "--heatmap", png]) == 0
    assert drawn[-1][0].words == words
    assert main([str(tiny.checkpoint), str(own), "-n", "2:3", "--heatmap", png, "--passage", "30"]) == 0
    assert len(drawn[-1][0].words) == 30
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "2:3", "--heatmap", png, "--max-tokens", "140"]) == 0
    assert len(drawn[-1][0].words) == 80  # a pipeline text: the default passage


def test_many_neurons_removed_together_are_listed_within_the_width_above_their_numbers(tiny, capsys, monkeypatch):
    """The heading of a removal of many neurons (hundreds of characters) wraps between neurons; its numbers follow."""
    monkeypatch.setenv("COLUMNS", "60")
    neurons = [f"2:{j}" for j in range(HIDDEN)] + [f"1:{j}" for j in range(HIDDEN)]  # 12 + 12
    args = [str(tiny.checkpoint), str(tiny.activations), "--tokens", "60", "--together"]
    assert main(args + [a for n in neurons for a in ("-n", n)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 60, lines
    start = lines.index("without 2:0 2:1 2:2 2:3 2:4 2:5 2:6 2:7 2:8 2:9 2:10 2:11")  # 57 characters; " 1:0" is 61
    heading = []
    for line in lines[start:]:
        heading.append(line)
        if line.endswith(":"):
            break
    assert " ".join(line.strip() for line in heading) == "without " + " ".join(neurons) + ":"
    assert heading[1] == "        1:0 1:1 1:2 1:3 1:4 1:5 1:6 1:7 1:8 1:9 1:10 1:11:"  # the rest, indented
    assert re.match(r"  perplexity \d+\.\d, [+-]\S+ % \(95 % interval", lines[start + len(heading)])
    assert any(line.startswith("without 2:3: perplexity") for line in lines)  # one neuron: not listed above


def test_word_lists_break_between_entries_within_the_width_and_keep_the_word_semicolon():
    """";" is a word of WikiText: its entry stays whole; every line ends within the width, ";" included."""
    listed = "was (72\u00d7 +0.011 = +0.8); ; (16\u00d7 +0.035 = +0.6); @-@ (23\u00d7 +0.021 = +0.5)"
    assert entries_wrapped(listed, "  helped most:   ", 17, 41) == [
        "  helped most:   was (72\u00d7 +0.011 = +0.8);",
        "                 ; (16\u00d7 +0.035 = +0.6);",
        "                 @-@ (23\u00d7 +0.021 = +0.5)"]
    # a width the first two entries fill to its last character, but for the ";" that would end the line: broken
    assert entries_wrapped(listed, "", 0, 46)[0] == "was (72\u00d7 +0.011 = +0.8);"
    assert entries_wrapped(listed, "", 0, 47)[0] == "was (72\u00d7 +0.011 = +0.8); ; (16\u00d7 +0.035 = +0.6);"
    # a change in %: two decimals, two significant digits below 0.1, never "1.5e+03"
    assert [percent(v) for v in (2.09462, -0.16696, 0.0493, 0.000403, 1500.0)] == [
        "+2.09", "-0.17", "+0.049", "+0.0004", "+1500.00"]


def test_the_printout_and_the_heatmap_title_say_where_the_means_come_from(tiny, tmp_path, capsys, monkeypatch):
    from lstmscope import heatmap

    titles = []
    monkeypatch.setattr(heatmap, "draw_blocks_to", lambda blocks, path, suptitle=None, **k: titles.append(suptitle))
    for extra, said in (([], "h held at its mean over the words read"),
                        (["--hold-from", str(tiny.activations)], f"h held at its mean over every token of "
                                                                 f"{tiny.activations}"),
                        (["--method", "zero"], "h held at 0")):
        assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "2:3", "--tokens", "50", "--heatmap",
                     str(tmp_path / "e.png"), *extra]) == 0
        out = capsys.readouterr().out  # (a line longer than the terminal broken between words: a long path)
        assert re.search(re.escape(f"a removed unit's {said}").replace("\\ ", "\\s+") + "\n", out), out
        assert titles[-1].endswith(f"neurons removed: {said}")


def test_the_heatmaps_blocks_share_one_scale_reaching_the_largest_effect_shown(tiny):
    """As in the pipeline's ablation heatmap, a neuron that matters little stays pale beside one that matters much:
    every block's scale reaches the largest |effect| of any block over the shared passage."""
    table, words, effects = ablate(str(tiny.checkpoint), str(tiny.activations), ["2:3", "1:5"], True, 300)
    blocks = effect_blocks(table, words, effects, 40)
    assert [b.title.split(": perplexity")[0] for b in blocks] == ["without 2:3", "without 1:5", "without 2:3 1:5"]
    shown = np.concatenate([b.values for b in blocks])
    largest = float(np.nanmax(np.abs(shown)))
    assert largest > 0
    # each block's own largest |effect| differs, so one scale per block would differ too
    assert len({round(float(np.nanmax(np.abs(b.values))), 9) for b in blocks}) > 1
    for b in blocks:
        assert (b.norm.vmin, b.norm.vmax) == pytest.approx((-largest, largest))


def test_the_console_script_runs(tiny, tmp_path):
    try:
        importlib.metadata.distribution("lstmscope")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    script = os.path.join(os.path.dirname(sys.executable), "lstmscope-ablate")
    r = subprocess.run([script, str(tiny.checkpoint), str(tiny.activations), "-n", "1:4", "--tokens", "100"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "without 1:4: perplexity" in r.stdout and "intact perplexity" in r.stdout


def test_the_library_function_refuses_a_method_it_does_not_know(tiny):
    """The command line offers only mean and zero; a caller of ``ablate`` with another name had its units held at 0."""
    with pytest.raises(ValueError, match=r"^--method median: choose one of mean, zero$"):
        ablate(str(tiny.checkpoint), str(tiny.activations), ["1:0"], max_tokens=50, method="median")


@pytest.mark.parametrize("args,message", [
    (["-n", "3:1"], r"model\.pt: layer 3 does not exist; the model has layers 1\.\.2"),
    (["-n", f"2:{HIDDEN}"], rf"model\.pt: neuron {HIDDEN} does not exist in layer 2; it has neurons 0\.\.{HIDDEN - 1}"),
    (["-n", "two:1"], r"--neuron 'two:1': expected LAYER:INDEX"),
    (["-n", "-1:1"], r"--neuron '-1:1': expected LAYER:INDEX"),  # the command's check, not argparse's
    (["--neuron", "-1:1"], r"--neuron '-1:1': expected LAYER:INDEX"),
    (["--neu", "-1:1"], r"--neuron '-1:1': expected LAYER:INDEX"),  # abbreviated, as argparse allows
    ([], r"nothing to remove: give --neuron"),
    (["-n", "1:2", "-n", "1:2"], r"--neuron given twice: 1:2"),
    (["-n", "2:3", "-n", "1:0", "-n", "2:03"], r"--neuron given twice: 2:3$"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path, capsys, args, message):
    csv, png = tmp_path / "t.csv", tmp_path / "e.png"
    assert main([str(tiny.checkpoint), str(tiny.activations), *args, "-o", str(csv), "--heatmap", str(png)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lstmscope-ablate: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not csv.exists() and not png.exists()


@pytest.mark.parametrize("tokens", ["1", "0", "-3"])
def test_fewer_than_two_tokens_is_a_usage_error(tiny, tmp_path, capsys, tokens):
    csv = tmp_path / "t.csv"
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:2", "--tokens", tokens, "-o", str(csv)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and err == (f"lstmscope-ablate: error: --max-tokens {tokens}: must be at least 2 "
                                             "(leave it out for the whole text)")
    assert not csv.exists()


@pytest.mark.parametrize("extra, said", [
    (["--top-words", "0"], "--top-words 0: must be >= 1"),
    (["--min-count", "-2"], "--min-count -2: must be >= 1"),
    (["--threads", "0"], "--threads 0: must be >= 1"),
    (["--heatmap", "{png}", "--passage", "0"], "--passage 0: must be >= 1"),
    (["--heatmap", "{png}", "--passage", "5001"], "--passage 5001: at most 5000 words make a readable figure"),
    (["--passage", "40"], "--passage shapes the --heatmap figure: give --heatmap FILE too"),
    (["--headings"], "--headings shapes the --heatmap figure: give --heatmap FILE too"),
    (["--together"], "--together removes the -n neurons all at once: give at least two"),
])
def test_an_option_that_would_do_nothing_or_too_much_is_a_usage_error_naming_it(tiny, tmp_path, capsys, extra, said):
    """Before, --passage and --headings without --heatmap and --together with one neuron were accepted and did
    nothing; --passage had no bound (6 000 drew a PNG 11 568 pixels high); one line named four options at once."""
    csv, png = tmp_path / "t.csv", tmp_path / "e.png"
    with pytest.raises(SystemExit) as exit_:
        main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:2", "-o", str(csv),
              *[a.format(png=png) for a in extra]])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and err == f"lstmscope-ablate: error: {said}"
    assert not csv.exists() and not png.exists()


def test_a_passage_longer_than_the_tokens_read_draws_them_all_and_says_so(tiny, tmp_path, capsys):
    png = tmp_path / "e.png"
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:2", "--tokens", "30", "--heatmap", str(png),
                 "--passage", "100"]) == 0
    err = capsys.readouterr().err
    assert "lstmscope-ablate: note: 30 tokens read: the --heatmap passage holds all of them, not --passage 100\n" in err
    assert png.is_file()
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:2", "--tokens", "30", "--heatmap", str(png),
                 "--passage", "30"]) == 0
    assert "--passage" not in capsys.readouterr().err  # a passage the text holds: no note


def test_an_activations_file_of_another_checkpoint_is_refused(tiny, tmp_path, capsys):
    assert main([str(tiny.dead_checkpoint), str(tiny.activations), "-n", "1:1"]) == 1
    err = capsys.readouterr().err
    assert "was dumped from another checkpoint than" in err and "dead.pt" in err


@pytest.mark.parametrize("beyond", [0, 90000, -1])
def test_token_ids_outside_the_models_vocabulary_are_refused_naming_file_id_and_size(tiny, tmp_path, capsys, beyond):
    """A file of this checkpoint (its checkpoint_sha256) whose ids the embedding lacks gave torch's traceback
    "IndexError: index out of range in self", naming neither the file nor the id."""
    vocab = load_checkpoint(tiny.checkpoint)[0].config.vocab_size
    bad_id = vocab + beyond if beyond >= 0 else beyond
    damaged = tmp_path / "ids.h5"
    damaged.write_bytes(tiny.activations.read_bytes())
    with h5py.File(damaged, "r+") as f:
        ids = f["tokens/ids"]
        ids[5] = bad_id
        if beyond == 0:
            ids[7] = vocab + 3  # the largest, after the first one out of range
        largest = int(ids[:].max())
    csv = tmp_path / "t.csv"
    assert main([str(tiny.checkpoint), str(damaged), "-n", "1:1", "-o", str(csv)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err == (f"lstmscope-ablate: error: {damaged}: tokens/ids gives token 5 id {bad_id}, and "
                                       f"its largest id is {largest}, but the vocabulary of {tiny.checkpoint} has "
                                       f"{vocab} words (ids 0-{vocab - 1}): was it dumped with another vocabulary?")
    assert not csv.exists()
    # read only the tokens before it: nothing out of range, nothing refused
    assert main([str(tiny.checkpoint), str(damaged), "-n", "1:1", "--tokens", "5", "-o", str(csv)]) == 0
    assert csv.exists()


def test_non_finite_activations_are_refused_not_held_as_a_nan_mean(tiny, tmp_path, capsys):
    """A removed unit is held at its mean h over the tokens read: one NaN in the file made that mean NaN, every
    probability NaN, and the command wrote a table of NaN with exit status 0."""
    damaged = tmp_path / "nan.h5"
    damaged.write_bytes(tiny.activations.read_bytes())
    with h5py.File(damaged, "r+") as f:
        f["layer1/h"][20, 3] = np.nan
        f["layer1/h"][30, 7] = np.inf
    csv = tmp_path / "t.csv"
    assert main([str(tiny.checkpoint), str(damaged), "-n", "1:1", "-o", str(csv)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"lstmscope-ablate: error: {damaged}: layer1/h holds non-finite values")
    assert "in 2 units (first: neuron 3): the file is damaged; dump it again" in err
    assert not csv.exists()
    # the tokens before the damaged one are fine
    assert main([str(tiny.checkpoint), str(damaged), "-n", "1:1", "--tokens", "20", "-o", str(csv)]) == 0


def test_more_tokens_than_the_text_has_are_read_as_the_whole_text_and_said(tiny, capsys):
    """--tokens beyond the text read the whole text without a word; the table's `tokens` said so only there."""
    with h5py.File(tiny.activations, "r") as f:
        n = int(f.attrs["n_tokens"])
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", str(n + 1000)]) == 0
    captured = capsys.readouterr()
    assert f"lstmscope-ablate: note: the text has {n} tokens: all of them read, not --max-tokens {n + 1000}\n" in captured.err
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", str(n)]) == 0
    assert "all of them read" not in capsys.readouterr().err
    # --max-tokens, as the pipeline's ablation.max_tokens (--tokens above: its earlier name, the same option)
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--max-tokens", str(n + 1000)]) == 0
    assert f"the text has {n} tokens: all of them read, not --max-tokens {n + 1000}\n" in capsys.readouterr().err


def test_a_file_that_is_no_checkpoint_names_the_order_of_the_arguments(tiny, tmp_path, capsys):
    assert main([str(tiny.activations), str(tiny.checkpoint), "-n", "1:1"]) == 1  # the two swapped
    err = capsys.readouterr().err.strip()
    order = "the arguments are CHECKPOINT ACTIVATIONS (results/models/<model>/model.pt results/activations/<model>/<text>.h5)"
    assert "\n" not in err and err.endswith(f"{tiny.activations}: an activations file, not a checkpoint; {order}")
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"model": "d0.2_r0"}\n')
    assert main([str(metrics), str(tiny.activations), "-n", "1:1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith(f"{metrics}: a text file, not a checkpoint; {order}")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny.checkpoint.read_bytes()[:-100])  # a copy cut short
    assert main([str(cut), str(tiny.activations), "-n", "1:1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.endswith(f"{cut}: not a checkpoint written by torch.save (a complete "
                                            "results/models/<model>/model.pt)")


def test_outputs_that_cannot_be_written_are_refused_before_any_removal(tiny, tmp_path, capsys):
    folder = tmp_path / "e.png"
    folder.mkdir()
    for option, path, message in [("--heatmap", folder, "is a folder; give a file name"),
                                  ("-o", tmp_path / "no" / "t.csv", f"the folder {tmp_path / 'no'} does not exist")]:
        assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", option, str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.endswith(f"{path}: {message}") and "removed" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["e.png"]


def test_a_table_another_program_wrote_is_not_replaced_one_of_this_commands_is(tiny, tmp_path, capsys):
    """-o replaced any CSV: the pipeline's divergence.csv or ablation table (which the explorer and the later
    stages then read as another table). A table whose record says the pipeline or another command wrote it is now
    refused before anything is computed; the command's own table, or a CSV without a record, is replaced."""
    from lstmscope.provenance import record_table

    def run(out):
        return main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", "50", "-o", str(out)])

    pipeline, other, damaged = (tmp_path / f"{name}.csv" for name in ("divergence", "other", "damaged"))
    for table in (pipeline, other, damaged):
        table.write_text("model,layer\nd0.0_r0,1\n")
    record_table(pipeline, rule="neuron_divergence", wildcards={"model": "d0.0_r0", "text": "test"})
    record_table(other, command="lstmscope-other")
    (tmp_path / "damaged.csv.provenance.json").write_text("{cut sh")
    before = digests(tmp_path.iterdir())
    for table, said in ((pipeline, "a table the pipeline's rule neuron_divergence wrote (its record "
                                   "divergence.csv.provenance.json says so); this command would replace it"),
                        (other, "a table lstmscope-other wrote"),
                        (damaged, "a table beside a provenance record that cannot be read "
                                  "(damaged.csv.provenance.json)")):
        assert run(table) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--output {table}: {said}" in err, err
    assert digests(tmp_path.iterdir()) == before
    own, bare = tmp_path / "own.csv", tmp_path / "bare.csv"
    bare.write_text("x\n")
    for table in (own, own, bare):  # written, written again over its own, and over a CSV without a record
        assert run(table) == 0 and list(pd.read_csv(table).neurons) == ["1:1"]


def test_a_table_or_figure_that_cannot_be_written_leaves_neither(tiny, tmp_path, tmp_path_factory):
    """A file-size limit makes a write fail after the removals, as a full disk does: where the table cannot be
    written, or the figure after it, the command fails in one line naming that output and leaves neither file (the
    table is kept under a temporary name until the figure is drawn), never a complete-looking table beside a failed
    command. (The console script in a process of its own, with the limit; any user, not only root.)"""
    import resource
    import signal

    try:
        importlib.metadata.distribution("lstmscope")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    script = os.path.join(os.path.dirname(sys.executable), "lstmscope-ablate")
    table, heatmap = tmp_path / "t.csv", tmp_path / "h.png"
    args = [script, str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "-o", str(table),
            "--heatmap", str(heatmap)]
    # matplotlib's cache in a folder of its own, made by the first run: under the limit, a cache it could not write
    # would add its own lines to the error
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path_factory.mktemp("mplconfig"))}
    assert subprocess.run(args, capture_output=True, text=True, timeout=300, env=env).returncode == 0
    sizes = table.stat().st_size, heatmap.stat().st_size
    assert sizes[0] + 1000 < sizes[1], sizes  # a limit between the two lets the table through, not the figure
    for path in (table, heatmap, table.with_name(table.name + ".provenance.json")):
        path.unlink()
    for limit, failing in ((100, f"--output {table}"), (sizes[0] + 500, f"--heatmap {heatmap}")):
        def limited(limit: int = limit) -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process being killed
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        r = subprocess.run(args, capture_output=True, text=True, timeout=300, preexec_fn=limited, env=env)
        said = f"lstmscope-ablate: error: {failing}: cannot be written (File too large)\n"
        assert r.returncode == 1 and r.stderr == said, (limit, r.stderr)
        assert list(tmp_path.iterdir()) == [], (limit, list(tmp_path.iterdir()))


@pytest.mark.parametrize("failure", ["full disk", "Ctrl-C", "Ctrl-C after the rename", "Ctrl-C before the rename"])
def test_a_table_whose_record_cannot_be_written_is_removed_with_one_line(tiny, tmp_path, monkeypatch, capsys, failure):
    """The table's record is written after the table takes its name: a full disk or a Ctrl-C there left the new
    table without a record (and ended in a traceback; the inputs were hashed in that window too). Now the table goes
    with it, and the error is one line; so does one stopped just after its rename (the folder's sync). One stopped
    before it takes its name (while the heatmap is drawn) leaves the table before and its record as they were."""
    import errno

    import lstmscope.atomic as atomic
    import lstmscope.heatmap as heatmap
    import lstmscope.provenance as provenance

    table = tmp_path / "t.csv"
    args = [str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", "60", "-o", str(table)]
    assert main(args) == 0 and table.is_file()
    capsys.readouterr()
    record = table.with_name(table.name + ".provenance.json")
    before = digests((table, record))

    def failing(path, **_):
        if failure == "Ctrl-C":
            raise KeyboardInterrupt
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(record.with_name(".t.csv.provenance.tmp9.json")))

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    if failure in ("full disk", "Ctrl-C"):
        monkeypatch.setattr(provenance, "record_table", failing)
    elif failure == "Ctrl-C after the rename":  # atomic_path syncs the folder after the rename: stopped there
        real = atomic.fsync
        monkeypatch.setattr(atomic, "fsync", lambda path: interrupted() if os.path.isdir(path) else real(path))
    else:
        monkeypatch.setattr(heatmap, "draw_blocks_to", interrupted)
        args += ["--heatmap", str(tmp_path / "e.png")]
    status = main(args)
    err = capsys.readouterr().err
    if failure == "full disk":
        assert status == 1 and err == f"lstmscope-ablate: error: --output {table}: cannot be written (No space left " \
                                      "on device)\n", err
    else:
        assert status == 130 and err == "lstmscope-ablate: stopped; an output not finished is removed\n", err
    if failure == "Ctrl-C before the rename":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.csv.provenance.json"]
        assert digests((table, record)) == before
    else:
        assert list(tmp_path.iterdir()) == []  # neither the new table nor the record of the one it replaced


def test_too_short_a_text_for_an_interval_is_noted(tiny, capsys):
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", "40"]) == 0
    captured = capsys.readouterr()
    assert "note: no 95 % interval of the change: it needs at least 41 words read" in captured.err
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", "41"]) == 0
    assert "no 95 % interval" not in capsys.readouterr().err


def test_a_text_with_no_word_that_often_says_why_the_word_lists_are_empty(tiny, tmp_path, capsys):
    import h5py
    with h5py.File(tiny.activations) as f:
        words = [w.decode() for w in f["tokens/words"][:40]]
    most = max(words.count(w) for w in set(words[1:]))  # the first word has no effect (no context)
    csv = tmp_path / "t.csv"
    for min_count, empty in ((most + 1, True), (2, False)):
        assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:1", "--tokens", "40",
                     "--min-count", str(min_count), "-o", str(csv)]) == 0
        note = (f"note: no word lists: no word occurring --min-count={min_count} or more times among the words read "
                "changed in probability")
        assert (note in capsys.readouterr().err) == empty
        lists = pd.read_csv(csv, keep_default_na=False)[["words_helped", "words_hindered"]]
        assert (lists == "").all(axis=None) == empty


def test_a_removal_that_helped_no_frequent_word_says_none_rather_than_dropping_the_line(tiny):
    """Where a removal helped (or hindered) no word occurring --min-count times, its line said nothing: left out."""
    table, _, _ = ablate(str(tiny.checkpoint), str(tiny.activations), ["2:3", "1:5"], max_tokens=200)
    assert (table.words_helped != "").all() and (table.words_hindered != "").all()
    table.loc[0, "words_helped"] = ""  # as effect_summary writes it where no such word was helped
    paragraphs = report(table).split("\n\n")
    first, second = (next(p for p in paragraphs if p.startswith(f"without {n}:")) for n in ("2:3", "1:5"))
    assert "\n  helped most:   none\n  hindered most: " in first
    assert "none" not in second and "\n  helped most:   " in second


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_names_the_option(tiny, tmp_path, capsys):
    csv = tmp_path / "t.csv"
    assert main([str(tiny.checkpoint), str(tiny.activations), "-n", "1:2", "--device", "cuda", "-o", str(csv)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("lstmscope-ablate: error: --device cuda: no CUDA device is available here; use --device cpu "
                   "(or auto: CUDA where there is one)")
    assert not csv.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_device_auto_and_cuda_give_the_cpus_table(tiny, device):
    """On a machine with CUDA, auto and cuda run the model there; the numbers are the CPU's."""
    args = (str(tiny.checkpoint), str(tiny.activations), ["2:3", "1:5"])
    cpu, _, cpu_effects = ablate(*args, together=True, max_tokens=300, device="cpu")
    other, _, other_effects = ablate(*args, together=True, max_tokens=300, device=device)
    numbers = ["perplexity", "intact_perplexity", "perplexity_change_pct"]
    np.testing.assert_allclose(other[numbers].to_numpy(float), cpu[numbers].to_numpy(float), rtol=1e-4, atol=1e-3)
    for a, b in zip(other_effects, cpu_effects):
        np.testing.assert_allclose(a[1:], b[1:], atol=1e-3)

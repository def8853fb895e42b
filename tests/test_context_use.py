"""How much context a model uses, on the small real model: each loss against the model read on the window alone by
plain torch, the draw of the words and the shuffles, the table read back and summarised, the figure, the errors."""
from __future__ import annotations

import copy
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lstmscope import context_use_summary
from lstmscope.activations_file import read_words
from lstmscope.word_classes import word_class
from lstmscope.context_use import (ContextUseError, choose_positions, context_losses, context_use,
                                   shuffled_windows,
                                   truncated_windows, window_log_probabilities)
from lstmscope.context_use_summary import (context_use_vs_dropout, read_context_tables, shortest_enough,
                                           summarise)
from lstmscope.model import load_checkpoint

from conftest import assert_each_refused, kept_figures, run_rule_script
from neurons_support import TEXT, tiny  # noqa: F401  (fixtures)

LENGTHS = [1, 3, 19, 20]


def reference_log_p(model, window: np.ndarray, target: int) -> float:
    """log p(target | window): the model's own forward on the window alone, from the zero state, one at a time."""
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(window, dtype=torch.int64)[:, None], model.init_hidden(1))
        return float(torch.log_softmax(logits[-1].double(), dim=-1)[target])


@pytest.fixture(scope="module")
def text(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:].astype(np.int64)
        stored = f["log_expectancy"][:].astype(np.float64)
        words = read_words(f)
    return model.eval(), ids, stored, words


@pytest.fixture(scope="module")
def table(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("context") / "context.csv"
    return context_use(tiny.checkpoint, tiny.activations, path, LENGTHS, 60, seed=5), path


def test_a_window_from_the_first_token_is_the_stream(text):
    """Read from the zero state, the words from the text's first on are the dump's stream: the same log p."""
    model, ids, stored, _ = text
    for t in (1, 2, 17, 150, 399):
        got = window_log_probabilities(model, ids[None, :t], ids[[t]])
        assert got[0] == pytest.approx(stored[t], abs=2e-5), t


@pytest.mark.parametrize("batch,time_block", [(3, 7), (512, 64)])
def test_each_window_is_read_alone_however_they_are_batched(text, batch, time_block):
    model, ids, _, _ = text
    positions = np.array([30, 31, 77, 200, 305, 399])
    windows = truncated_windows(ids, positions, 25)
    got = window_log_probabilities(model, windows, ids[positions], batch=batch, time_block=time_block)
    want = [reference_log_p(model, ids[t - 25:t], ids[t]) for t in positions]
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_the_windows_are_the_words_before_each_position(text):
    _, ids, _, _ = text
    positions = np.array([5, 9, 40])
    windows = truncated_windows(ids, positions, 5)
    assert windows.tolist() == [list(ids[t - 5:t]) for t in positions]
    rng = np.random.default_rng(0)
    shuffled = shuffled_windows(ids, positions, 5, 2, rng)
    for row, t in zip(shuffled, positions):
        assert list(row[3:]) == list(ids[t - 2:t])  # the nearest 2 in order
        assert sorted(row[:3]) == sorted(ids[t - 5:t - 2])  # the 3 before them, the same words
    long = shuffled_windows(ids, np.arange(100, 400, 10), 60, 10, np.random.default_rng(0))
    kept = truncated_windows(ids, np.arange(100, 400, 10), 60)
    assert (long[:, :50] != kept[:, :50]).any(axis=1).all()  # 50 words: every row's order changed
    # each row its own permutation: no two rows' far words moved alike
    moves = {tuple(np.argsort(np.argsort(r))) for r in long[:, :50]}
    assert len(moves) > 1
    again = shuffled_windows(ids, np.arange(100, 400, 10), 60, 10, np.random.default_rng(0))
    assert (again == long).all()


def test_the_positions_drawn(text):
    _, ids, _, _ = text
    chosen = choose_positions(len(ids), 20, 60, seed=5)
    assert len(chosen) == len(set(chosen)) == 60
    assert list(chosen) == sorted(chosen) and chosen.min() >= 20 and chosen.max() <= len(ids) - 1
    assert (choose_positions(len(ids), 20, 60, seed=5) == chosen).all()
    assert (choose_positions(len(ids), 20, 60, seed=6) != chosen).any()
    every = choose_positions(len(ids), 20, 10_000, seed=5)  # more asked than there are: every one
    assert list(every) == list(range(20, len(ids)))


def test_the_table_holds_the_models_losses(text, table):
    """Every number of the truncated rows from the model read on each window alone (plain torch, one at a time), the
    stream's from the dump; the words' classes counted from the words."""
    model, ids, stored, words = text
    frame, path = table
    pd.testing.assert_frame_equal(pd.read_csv(path), frame, rtol=1e-5, check_exact=False, check_dtype=False)
    chosen = choose_positions(len(ids), max(LENGTHS), 60, seed=5)
    classes = np.array([word_class(words[t]) for t in chosen])
    stream = -stored[chosen]
    assert set(frame["longest"]) == {20} and set(frame["model"]) == {"d0.2_r0"} and set(frame["text"]) == {"test"}
    for k in LENGTHS:
        losses = np.array([-reference_log_p(model, ids[t - k:t], ids[t]) for t in chosen])
        for words_class in ("all", *sorted(set(classes))):
            mask = np.ones(len(chosen), bool) if words_class == "all" else classes == words_class
            row = frame[(frame["variant"] == "truncated") & (frame["length"] == k) & (frame["words"] == words_class)]
            assert len(row) == 1
            row = row.iloc[0]
            diff = losses[mask] - stream[mask]
            assert row["positions"] == mask.sum()
            assert row["loss"] == pytest.approx(losses[mask].mean(), abs=1e-5)
            assert row["stream_loss"] == pytest.approx(stream[mask].mean(), abs=1e-9)
            assert row["increase"] == pytest.approx(diff.mean(), abs=1e-5)
            if mask.sum() > 1:
                assert row["increase_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(mask.sum()), rel=1e-3, abs=1e-6)
    # the classes split the words predicted
    per_class = frame[(frame["words"] != "all") & (frame["variant"] == "truncated") & (frame["length"] == 1)]
    assert per_class["positions"].sum() == 60


def test_each_words_loss_after_each_context(text):
    """Per word: the truncated and the shuffled contexts' losses are the model read on those windows alone (plain
    torch), the windows shuffled as documented: from the seed (seed, 1), one length after another, shortest first.
    With one far word (19 of 20 kept) there is nothing to shuffle: the 20-word window's loss."""
    model, ids, _, _ = text
    # the model made to remember and to heed what it remembers (forget gates held open, larger input and output
    # weights): far words then move the loss
    model = copy.deepcopy(model)
    n = model.config.hidden_size
    with torch.no_grad():
        for k in range(model.config.layers):
            getattr(model.rnn, f"bias_ih_l{k}")[n:2 * n] += 6.0
        model.encoder.weight *= 10
        model.decoder.weight *= 10
    chosen = choose_positions(len(ids), 20, 40, seed=5)
    losses = context_losses(model, ids, chosen, [19, 1, 20, 3], seed=5, batch=16)
    assert list(losses) == [("truncated", 1), ("truncated", 3), ("truncated", 19), ("truncated", 20),
                            ("shuffled", 1), ("shuffled", 3), ("shuffled", 19)]
    rng = np.random.default_rng([5, 1])
    for k in (1, 3, 19):
        windows = shuffled_windows(ids, chosen, 20, k, rng)
        want = [-reference_log_p(model, w, ids[t]) for w, t in zip(windows, chosen)]
        np.testing.assert_allclose(losses["shuffled", k], want, atol=2e-5)
        want = [-reference_log_p(model, ids[t - k:t], ids[t]) for t in chosen]
        np.testing.assert_allclose(losses["truncated", k], want, atol=2e-5)
    np.testing.assert_allclose(losses["shuffled", 19], losses["truncated", 20], atol=1e-6)
    # the far words' order moves some words' losses by more than the tolerance above: the check can tell
    assert np.abs(losses["shuffled", 1] - losses["truncated", 20]).max() > 0.01


def test_the_table_has_a_row_per_context(table):
    frame, _ = table
    whole = frame[frame["words"] == "all"]
    assert whole[["variant", "length"]].values.tolist() == [
        *(["truncated", k] for k in LENGTHS), *(["shuffled", k] for k in LENGTHS[:-1])]
    shuffled = whole[whole["variant"] == "shuffled"].set_index("length")
    truncated = whole[whole["variant"] == "truncated"].set_index("length")
    assert shuffled.loc[19, "loss"] == pytest.approx(truncated.loc[20, "loss"], abs=1e-6)


def test_the_same_seed_gives_the_same_table_and_another_seed_other_words(tiny, table, tmp_path):
    frame, _ = table
    again = context_use(tiny.checkpoint, tiny.activations, tmp_path / "again.csv", [20, 19, 3, 1], 60, seed=5)
    pd.testing.assert_frame_equal(again, frame, check_exact=True)
    assert again.attrs["device"] == "cpu" and again.attrs["gpu"] is None and again.attrs["cpu_kernels"]
    other = context_use(tiny.checkpoint, tiny.activations, tmp_path / "other.csv", LENGTHS, 60, seed=6)
    # the stream's loss on the words drawn (first row: all words, truncated to 1): other words, another loss
    assert other["stream_loss"].iloc[0] != pytest.approx(frame["stream_loss"].iloc[0])


def test_bad_settings_and_files_are_named(tiny, tmp_path):
    out = tmp_path / "c.csv"
    for lengths, message in (([], r"context_use.lengths is empty"), ([0, 3], r"context_use.lengths holds 0"),
                             ([3, 3], r"context_use.lengths \[3, 3\] names a length twice")):
        with pytest.raises(ContextUseError, match=message):
            context_use(tiny.checkpoint, tiny.activations, out, lengths, 10, 1)
    with pytest.raises(ContextUseError, match=r"context_use.positions=1: at least 2"):
        context_use(tiny.checkpoint, tiny.activations, out, [1], 1, 1)
    with pytest.raises(ContextUseError, match=rf"activations.h5 holds {TEXT.tokens} tokens: too few for a context of "
                                              r"399 words \(context_use.lengths\)"):
        context_use(tiny.checkpoint, tiny.activations, out, [1, 399], 10, 1)
    with pytest.raises(ContextUseError, match=r"activations.h5 was dumped from another checkpoint than .*dead.pt"):
        context_use(tiny.dead_checkpoint, tiny.activations, out, [1, 2], 10, 1)
    with pytest.raises(ContextUseError, match=r"nothere.pt: checkpoint not found"):
        context_use(tmp_path / "nothere.pt", tiny.activations, out, [1, 2], 10, 1)
    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f["log_expectancy"][50:400] = np.nan
    with pytest.raises(ValueError, match=r"damaged.h5: log_expectancy of token 50 is nan, which no log-probability is "
                                         r"\(the file is damaged"):
        context_use(tiny.checkpoint, damaged, out, [1, 2], 10, 1)
    assert not out.exists()


# --------------------------------------------------------------------------- the table read back, the summary


def test_the_shortest_length_that_is_enough():
    lengths = np.array([1, 2, 5, 10, 20])
    assert shortest_enough(lengths, np.array([0.5, 0.3, 0.05, 0.01, 0.0]), 0.06) == 5
    assert shortest_enough(lengths, np.array([0.5, 0.01, 0.3, 0.01, 0.0]), 0.06) == 10  # dips under, rises again
    assert np.isnan(shortest_enough(lengths, np.array([0.5, 0.3, 0.2, 0.1, 0.07]), 0.06))
    assert shortest_enough(lengths, np.zeros(5), 0.06) == 1
    assert shortest_enough(lengths[::-1], np.array([0.0, 0.01, 0.05, 0.3, 0.5]), 0.06) == 5  # any order given


def constructed(model: str, dropout: float, truncated: list[float], shuffled: list[float], stream: float = 5.0
                ) -> pd.DataFrame:
    """A context-use table of lengths 1, 2, 5, 10 (the longest) for all words, from the increases given."""
    rows = []
    for variant, increases in (("truncated", truncated), ("shuffled", shuffled)):
        for k, inc in zip([1, 2, 5, 10], increases):
            rows.append({"model": model, "text": "test", "dropout": dropout, "words": "all", "variant": variant,
                         "length": k, "longest": 10, "positions": 100, "loss": stream + inc, "stream_loss": stream,
                         "increase": inc, "increase_se": 0.01})
    return pd.DataFrame(rows)


def test_the_summary_of_constructed_tables(tmp_path):
    """Tolerance 1 % of a stream loss of 5: 0.05. Model a: the truncated context is enough from 5 words on; the
    shuffled far words matter down to 5 (0.2 over the window at 2). Model b never gets within: no effective
    context; its shuffled rows are measured against its own window (0.1 over the stream)."""
    a = constructed("d0.0_r0", 0.0, [1.0, 0.2, 0.04, 0.0], [1.1, 0.2, 0.03])
    b = constructed("d0.5_r0", 0.5, [2.0, 1.0, 0.5, 0.1], [2.1, 0.3, 0.12])
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for frame, path in zip((a, b), paths):
        frame.to_csv(path, index=False)
    summary = summarise(read_context_tables(paths), 0.01)
    assert summary["model"].tolist() == ["d0.0_r0", "d0.5_r0"]
    assert summary["effective_context"].tolist()[0] == 5 and np.isnan(summary["effective_context"].iloc[1])
    assert summary["order_span"].tolist() == [5, 5]  # b: 0.12 - 0.1 = 0.02 within at 5, 0.2 over at 2
    assert summary["window_increase"].tolist() == [0.0, 0.1]
    assert summary["stream_loss"].tolist() == [5.0, 5.0] and summary["tolerance"].tolist() == [0.01, 0.01]
    loose = summarise(read_context_tables(paths), 0.05)  # 0.25: b's window (0.1) and 5 words (0.5)? 5 is over
    assert loose["effective_context"].tolist() == [2, 10]
    with pytest.raises(ValueError, match=r"context_use.tolerance=1.5: must be between 0 and 1"):
        summarise(read_context_tables(paths), 1.5)


def test_the_reader_refuses_what_no_context_table_holds(table, tmp_path):
    frame, _ = table
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    assert len(read_context_tables([good])) == len(frame)
    n = len(frame)
    cases = {
        "variant": (frame.assign(variant=["reversed"] + list(frame["variant"][1:])),
                    r"column variant must hold truncated or shuffled; line 2 has 'reversed'"),
        "words": (frame.assign(words=["nouns"] + list(frame["words"][1:])), r"column words must hold one of all, eos"),
        "length": (frame.assign(length=[0] + list(frame["length"][1:])), r"column length must hold lengths from 1 "
                   r"to the longest, 20; line 2 has 0"),
        "twice": (pd.concat([frame, frame.iloc[[4]]]), rf"line {n + 2} repeats words"),
        "increase": (frame.assign(increase=frame["increase"] + 0.5), r"column increase must hold loss - stream_loss"),
        "empty": (frame.assign(loss=[np.nan] + list(frame["loss"][1:])), r"column loss .* line 2"),
        "missing": (frame.drop(columns=["stream_loss"]), r"stream_loss"),
        "longest": (frame.assign(longest=[30] + [20] * (n - 1)), r"the rows of 2 longests"),
        "window": (frame[~((frame["variant"] == "truncated") & (frame["length"] == 20))],
                   r"no row of all words truncated to the longest length, 20"),
        "dropout": (frame.assign(dropout=[np.nan] + [0.2] * (n - 1)), r"column dropout .* line 2"),
        "dropouts": (frame.assign(dropout=[0.3] + [0.2] * (n - 1)), r"the rows of 2 dropouts"),
        "counts": (frame.assign(positions=[7] + list(frame["positions"][1:])), r"column positions must hold one count "
                   r"per class of word \(every context predicts the same words\); line 2 has 7"),
        "lacking": (frame.drop(index=frame.index[(frame["words"] == "function") & (frame["length"] == 3)
                                                 & (frame["variant"] == "shuffled")]),
                    r"words function lack the row of shuffled length 3, where the table's contexts are the lengths "
                    r"1, 3, 19, 20 truncated and all but 20 shuffled"),
        "shuffles": (frame[~((frame["variant"] == "shuffled") & (frame["length"] == 3))],
                     r"words all lack the row of shuffled length 3"),
        "extra": (pd.concat([frame, frame[(frame["words"] == "function") & (frame["length"] == 3)
                                          & (frame["variant"] == "shuffled")].assign(length=7)]),
                  r"words function add the row of shuffled length 7"),
    }
    assert_each_refused(cases, tmp_path, read_context_tables)
    shuffled_at_longest = frame.copy()
    shuffled_at_longest.loc[shuffled_at_longest["variant"] == "shuffled", "length"] = 20
    shuffled_at_longest.drop_duplicates(["words", "variant", "length"]).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(ValueError, match=r"s.csv: column length must hold shorter lengths than the longest \(20\) "
                                         r"where the variant is shuffled"):
        read_context_tables([tmp_path / "s.csv"])
    other = tmp_path / "other.csv"
    frame.assign(text="train").to_csv(other, index=False)
    with pytest.raises(ValueError, match=r"other.csv is a context-use table of text train, .*good.csv of text test"):
        read_context_tables([good, other])
    with pytest.raises(ValueError, match=r"good.csv is a second context-use table of model d0.2_r0"):
        read_context_tables([good, good])
    with pytest.raises(ValueError, match=r"no context-use tables given"):
        read_context_tables([])


@pytest.fixture
def drawn(monkeypatch):
    """The figures the module would save, kept open to be read, and closed after the test."""
    yield from kept_figures(monkeypatch, context_use_summary)


def test_the_figure_across_models(table, tmp_path, drawn):
    """Two models (the second's losses raised by half the first's increases): a line per model in (a) and (b) at
    the increase's share of the stream's loss, (c) and (d) a point per model."""
    frame, _ = table
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    frame.to_csv(paths[0], index=False)
    frame.assign(model="d0.8_r0", dropout=0.8, loss=frame["loss"] + frame["increase"] / 2,
                 increase=frame["increase"] * 1.5).to_csv(paths[1], index=False)
    summary = context_use_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg",
                                     tolerance=0.01)
    written = pd.read_csv(tmp_path / "t.csv")
    assert written["model"].tolist() == summary["model"].tolist()
    np.testing.assert_allclose(written["stream_loss"], summary["stream_loss"], rtol=1e-5)
    axes = drawn[0].axes
    assert [ax.get_title() for ax in axes[:4]] == ["(a) only the last k words read",
                                                   "(b) the words before the last k shuffled", "(c) effective context",
                                                   "(d) span whose order matters"]
    whole = frame[(frame["words"] == "all") & (frame["variant"] == "truncated")].sort_values("length")
    share = 100 * whole["increase"].to_numpy() / whole["stream_loss"].to_numpy()
    lines = [line for line in axes[0].get_lines() if len(line.get_xdata()) == len(LENGTHS)]
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), LENGTHS)
    np.testing.assert_allclose(lines[0].get_ydata(), share, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lines[1].get_ydata(), 1.5 * share, rtol=1e-4, atol=1e-6)
    shuffled = [line for line in axes[1].get_lines() if len(line.get_xdata()) == len(LENGTHS)]
    assert len(shuffled) == 2 and list(shuffled[0].get_xdata()) == LENGTHS  # ends at the window in order
    assert shuffled[0].get_ydata()[-1] == pytest.approx(share[-1], abs=1e-6)
    assert axes[2].get_yscale() == "log" and axes[0].get_xscale() == "log"
    assert "within 1 % of the loss after the whole text" in drawn[0].texts[0].get_text()
    # the shaded bands: the share ± 1.96 standard errors of the increase, which the title says
    assert "(a, b) shaded \u00b11.96 standard errors" in " ".join(drawn[0].texts[0].get_text().split())
    band = next(c for c in axes[0].collections if len(c.get_paths()))
    ys = band.get_paths()[0].vertices[:, 1]
    se = 100 * 1.96 * whole["increase_se"].fillna(0).to_numpy() / whole["stream_loss"].to_numpy()
    np.testing.assert_allclose([ys.min(), ys.max()], [(share - se).min(), (share + se).max()], rtol=1e-4, atol=1e-6)


def test_panels_c_and_d_from_constructed_tables(tmp_path, drawn):
    """The effective context and order span of the constructed tables (see the summary's test): model a's 5 words a
    point at dropout 0, model b's "more than 10" a hollow triangle at the top, and no point of the line there."""
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    constructed("d0.0_r0", 0.0, [1.0, 0.2, 0.04, 0.0], [1.1, 0.2, 0.03]).to_csv(paths[0], index=False)
    constructed("d0.5_r0", 0.5, [2.0, 1.0, 0.5, 0.1], [2.1, 0.3, 0.12]).to_csv(paths[1], index=False)
    context_use_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg", tolerance=0.01)
    effective, order = drawn[0].axes[2:4]
    points, over = effective.collections
    np.testing.assert_allclose(points.get_offsets(), [[0.0, 5.0]])
    assert over.get_offsets()[0][0] == 0.5 and over.get_offsets()[0][1] > 10  # above the longest length
    assert len(over.get_facecolors()) == 0 or over.get_facecolors()[0][3] == 0  # hollow
    line, = effective.get_lines()
    assert line.get_xdata().tolist() == [0.0, 0.5] and line.get_ydata()[0] == 5 and np.isnan(line.get_ydata()[1])
    points, = order.collections
    np.testing.assert_allclose(points.get_offsets(), [[0.0, 5.0], [0.5, 5.0]])


def test_classes_of_equal_lengths_are_drawn_side_by_side(tmp_path, drawn):
    """Function and content words with the same effective context as all words: three points beside each other at
    the model's dropout (all words on it), not one hiding the others."""
    table = constructed("d0.0_r0", 0.0, [1.0, 0.2, 0.04, 0.0], [1.1, 0.2, 0.03])
    table = pd.concat([table.assign(words=words) for words in ("all", "function", "content")], ignore_index=True)
    table.to_csv(tmp_path / "a.csv", index=False)
    summary = context_use_vs_dropout([tmp_path / "a.csv"], tmp_path / "t.csv", tmp_path / "f.png",
                                     tmp_path / "f.svg", tolerance=0.01)
    assert summary.groupby("words")["effective_context"].first().tolist() == [5, 5, 5]  # equal: would coincide
    effective = drawn[0].axes[2]
    points = sorted(tuple(c.get_offsets()[0]) for c in effective.collections)
    assert [y for _, y in points] == [5.0, 5.0, 5.0]
    xs = [x for x, _ in points]
    assert xs[0] < 0.0 == xs[1] < xs[2] and xs[2] - xs[0] < 0.5 * 0.1  # beside 0: within half the default gap


def test_the_rule_scripts(tiny, tmp_path):
    """The two scripts' wiring on real files: the table of one model, its provenance beside it, and the summary."""
    table = tmp_path / "results/context_use/d0.2_r0/test.csv"
    table.parent.mkdir(parents=True)
    run_rule_script("context_use", "context_use", tmp_path / "a.log",
                    input={"checkpoint": str(tiny.checkpoint), "activations": str(tiny.activations)},
                    output={"table": str(table)},
                    params={"lengths": [1, 4], "positions": 30, "seed": 2, "device": "cpu"},
                    wildcards={"model": "d0.2_r0", "text": "test"})
    frame = pd.read_csv(table)
    assert sorted(set(frame["length"])) == [1, 4] and frame.loc[frame["words"] == "all", "positions"].max() == 30
    assert (tmp_path / "results/context_use/d0.2_r0/test.csv.provenance.json").exists()
    out = {"table": str(tmp_path / "s.csv"), "png": str(tmp_path / "s.png"), "svg": str(tmp_path / "s.svg")}
    run_rule_script("context_use_vs_dropout", "context_use_vs_dropout", tmp_path / "b.log",
                    input={"tables": [str(table)]}, output=out, params={"tolerance": 0.01, "dpi": 50},
                    wildcards={"text": "test"})
    assert pd.read_csv(out["table"])["model"].unique().tolist() == ["d0.2_r0"]
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "s.svg").stat().st_size > 0

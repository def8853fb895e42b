"""neuron_tracking: contexts on real WikiText-2 text, effect sizes, extreme words of the top neurons."""
from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from lstmscope.activations_file import ActivationsError, open_activations, read_words
from lstmscope.histogram import HistogramError
from lstmscope.tracking import CONTEXTS, START_UP, cohens_d, context_effects, context_masks, extreme_words, \
    neuron_tracking, context_word_groups, tracking_summary, within_word_d, word_groups, _fmt, start_up

from neurons_support import HIDDEN, LAYERS, degenerate, divergence_csv, tiny  # noqa: F401  (fixtures)


def test_context_masks_on_a_handwritten_line():
    words = 'He said " go ( now ) " and left in 1998 . <eos> " open ( 3.5'.split()
    m = context_masks(words)
    #        He    said  "     go    (     now   )     "     and   left  in    1998  .     <eos> "     open  (     3.5
    quote = [0,    0,    1,    1,    1,    1,    1,    0,    0,    0,    0,    0,    0,    0,    1,    1,    1,    1]
    paren = [0,    0,    0,    0,    1,    1,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    1,    1]
    prenum = [0,   0,    0,    0,    0,    0,    0,    0,    0,    0,    1,    0,    0,    0,    0,    0,    1,    0]
    preeos = [0,   0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    1,    0,    0,    0,    0,    0]
    assert m["quote"].astype(int).tolist() == quote
    assert m["paren"].astype(int).tolist() == paren
    assert m["pre_number"].astype(int).tolist() == prenum
    assert m["pre_eos"].astype(int).tolist() == preeos
    assert not m["heading"].any()
    # a ")" with no "(" open is passed over: it neither closes the "(" after it nor keeps one open at the next
    assert context_masks(") ( a ) b ( ( c ) d ) e".split())["paren"].astype(int).tolist() == [
        0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    # WikiText's numbers and blank lines: the state after @,@ or @.@ is inside a number, not before one; the
    # <eos> of a line followed by a blank line, and a heading's last "=", do not end a paragraph
    words = 'cost 1 @,@ 000 or 3 @.@ 5 in 1990 @-@ 91 . <eos> <eos> = A = <eos> <eos> B'.split()
    m = context_masks(words)
    #         cost  1  @,@  000  or  3  @.@  5  in  1990  @-@  91  .  <eos> <eos> =  A  =  <eos> <eos> B
    prenum = [1,    0, 0,   0,   1,  0, 0,   0, 1,  0,    1,   0,  0, 0,    0,    0, 0, 0, 0,    0,    0]
    preeos = [0,    0, 0,   0,   0,  0, 0,   0, 0,  0,    0,   0,  1, 0,    0,    0, 0, 0, 0,    0,    0]
    assert m["pre_number"].astype(int).tolist() == prenum
    assert m["pre_eos"].astype(int).tolist() == preeos
    words = '<eos> = Film = <eos> Text = x . <eos> = = A = = <eos> B'.split()
    #                 <eos> =  Film =  <eos> Text =  x  .  <eos> =  =  A  =  =  <eos> B
    assert context_masks(words)["heading"].astype(int).tolist() == [
                      0,    1, 1,   1, 1,    0,   0, 0, 0, 0,    1, 1, 1, 1, 1, 1,    0]


def test_cohens_d_by_hand():
    # means 2 and 5.5; variances 1 and 5/3; pooled sd sqrt((2*1 + 3*5/3) / 5) = sqrt(1.4)
    assert cohens_d(np.array([1.0, 2, 3]), np.array([4.0, 5, 6, 7])) == pytest.approx(-3.5 / np.sqrt(1.4))
    assert np.isnan(cohens_d(np.array([1.0]), np.array([1.0, 2.0])))
    assert np.isnan(cohens_d(np.array([1.0, 1.0]), np.array([1.0, 1.0])))
    # a neuron constant on each side (a saturated unit): no spread, no d (not one of millions), in float32 and in
    # float64 values whose mean does not come out exact
    for value, dtype in ((0.1, np.float32), (0.7615942, np.float64), (0.1, np.float64)):
        inside, outside = np.full(1000, value, dtype=dtype), np.full(50, 0.7, dtype=dtype)
        assert np.isnan(cohens_d(inside, outside)) and np.isnan(cohens_d(outside, inside)), (value, dtype)
    assert np.isfinite(cohens_d(np.array([0.3, 0.3, 0.3]), np.array([0.1, 0.2, 0.2])))  # one side varies: a d
    # float32 values with spread: the same d as from their float64 copies
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.01, 1000).astype(np.float32), rng.normal(0.31, 0.01, 500).astype(np.float32)
    assert cohens_d(a, b) == pytest.approx(cohens_d(a.astype(np.float64), b.astype(np.float64)), rel=1e-12)


def test_within_word_d_by_hand():
    # word 0 (A): inside 3, 5, outside 1, 3; word 1 (B): inside 10, outside 6, 8; word 2 only outside, word 3
    # only inside: both left out. Difference from the same word outside, per context token: 1, 3, 3 -> 7/3;
    # deviations from each word's own mean inside / outside: -1 1 -1 1 0 -1 1, 7 tokens, 4 means -> sd sqrt(6/3)
    ids = np.array([0, 0, 0, 0, 1, 1, 1, 2, 3])
    values = np.array([3.0, 5, 1, 3, 10, 6, 8, 100, 50])
    mask = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    n, d = within_word_d(values, word_groups(mask, ids))
    assert n == 3 and d == pytest.approx((7 / 3) / np.sqrt(2))
    assert np.isnan(within_word_d(values, word_groups(ids == 3, ids))[1])  # no word on both sides
    assert within_word_d(values, word_groups(np.zeros(9, dtype=bool), ids))[0] == 0


def test_within_word_d_separates_the_word_from_the_context(tiny):
    """A neuron that reacts to the words that end paragraphs (the full stop) wherever they stand has a large
    pre_eos d but no within-word effect; one that reacts to them only before <eos> keeps it."""
    with open_activations(tiny.activations) as f:
        words, ids = read_words(f), f["tokens/ids"][:].astype(np.int64)
    masks = context_masks(words)
    pre = masks["pre_eos"]
    ending = np.isin(ids, ids[pre])
    assert pre.sum() >= 3 and (ending & ~pre).sum() > pre.sum()  # those words also stand elsewhere
    noise = np.random.default_rng(0).normal(0, 0.1, len(words))
    on_word = context_effects(ending + noise, masks, context_word_groups(masks, ids))
    assert on_word["pre_eos_d"] > 1 and abs(on_word["pre_eos_word_d"]) < 0.5
    on_end = context_effects(pre + noise, masks, context_word_groups(masks, ids))
    assert on_end["pre_eos_d"] > 2 and on_end["pre_eos_word_d"] > 2
    assert on_end["pre_eos_word_n"] == pre.sum()  # every such word stands outside the context too


def test_extreme_words_are_distinct_and_ordered():
    words = ["a", "b", "a", "c", "d"]
    values = np.array([0.9, 0.5, 0.95, -0.2, -0.7])
    assert extreme_words(values, words, 2) == [("a", 0.95), ("b", 0.5)]
    assert extreme_words(values, words, 3, lowest=True) == [("d", -0.7), ("c", -0.2), ("b", 0.5)]
    assert extreme_words(values, words, 2, skip=2) == [("a", 0.95), ("c", -0.2)]  # the first two tokens left out
    assert extreme_words(values, words, 1, lowest=True, skip=4) == [("d", -0.7)]
    assert (start_up(100), start_up(101)) == (0, START_UP)  # a text of at most twice the start-up keeps it all
    # as listed in tracking.csv: two decimals, a value that rounds to zero without a sign of its own
    listed = _fmt([("(", -0.001), ("a", 0.004), ("b", -0.006), (";", 1.234)])
    assert listed == "( (+0.00); a (+0.00); b (-0.01); ; (+1.23)"


def test_tracking_table_of_the_top_neurons_matches_direct_computation(tiny, divergence_csv, tmp_path):
    out = neuron_tracking(tiny.activations, divergence_csv, tmp_path / "t.csv", top_k=2, top_words=4)
    assert len(out) == LAYERS * 2 * 2
    again = pd.read_csv(tmp_path / "t.csv")
    assert list(again.columns) == list(out.columns)
    div = pd.read_csv(divergence_csv)
    with open_activations(tiny.activations) as f:
        words = read_words(f)
        # contexts come from the text's words: a number outside the vocabulary (read as <unk>) still counts
        masks = context_masks(read_words(f, split=True))
        assert masks["pre_number"].sum() > context_masks(words)["pre_number"].sum()
        assert all(masks[c].any() for c in CONTEXTS)  # the tiny text holds every context, headings too
        with_start = []  # per list: whether the text's first tokens would have changed it
        for r in out.itertuples():
            expected_rank = div[(div.layer == r.layer) & (div.state == r.state) & (div.neuron == r.neuron)]["rank"]
            assert int(expected_rank.iloc[0]) == r.rank <= 2
            v = f[f"layer{r.layer}/{r.state}"][:, r.neuron].astype(np.float64)
            for c in CONTEXTS:
                m = masks[c]
                assert getattr(r, f"{c}_mean_in") == pytest.approx(v[m].mean())
                assert getattr(r, f"{c}_mean_out") == pytest.approx(v[~m].mean())
                assert getattr(r, f"{c}_diff") == pytest.approx(v[m].mean() - v[~m].mean())
                assert getattr(r, f"{c}_n") == m.sum()
                # Cohen's d: the difference of the means over the pooled standard deviation (ddof 1)
                a, b = v[m], v[~m]
                pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
                assert getattr(r, f"{c}_d") == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-9)
            best = max(CONTEXTS, key=lambda c: abs(getattr(r, f"{c}_d")))
            assert r.strongest_context == best
            assert r.strongest_word_d == getattr(r, f"{best}_word_d")
            ids = f["tokens/ids"][:].astype(np.int64)
            for c in CONTEXTS:
                n, d = within_word_d(v, word_groups(masks[c], ids))
                assert getattr(r, f"{c}_word_n") == n and np.isclose(getattr(r, f"{c}_word_d"), d, equal_nan=True)
            top_word = r.highest_words.split("; ")[0]
            settled = v[START_UP:]  # the text's first tokens are the model's start from the zero state: left out
            assert top_word == f"{words[START_UP + int(np.argmax(settled))]} ({settled.max():+.2f})".replace(
                "(-0.00)", "(+0.00)")
            # the 4 words with the highest (lowest) single value, each word once, with that value (a tie: the
            # word read first)
            tokens = pd.DataFrame({"word": words, "value": v, "position": np.arange(len(v))})
            for column, ascending in (("highest_words", False), ("lowest_words", True)):
                for skip in (START_UP, 0):
                    extreme = (tokens[tokens.position >= skip]
                               .sort_values(["value", "position"], ascending=[ascending, True])
                               .drop_duplicates("word").head(4))
                    listed = "; ".join(f"{w} ({x:+.2f})".replace("(-0.00)", "(+0.00)")
                                       for w, x in zip(extreme.word, extreme.value))
                    if skip:
                        assert getattr(r, column) == listed
                    else:
                        with_start.append(listed != getattr(r, column))
    assert any(with_start), "the start-up tokens change no list here: the test would pass without leaving them out"
    summary = tracking_summary([tmp_path / "t.csv"], tmp_path / "s.csv", per_group=1)
    assert len(summary) == LAYERS * 2 and (summary["rank"] == 1).all()
    # an empty rank sorted last: the layer's second neuron became its top one, without a word
    pd.read_csv(tmp_path / "t.csv").assign(rank=lambda t: t["rank"].where(t["rank"] != 1)).to_csv(
        tmp_path / "blank.csv", index=False)
    with pytest.raises(ActivationsError, match=r"blank\.csv: column rank must hold whole numbers; line \d+ has no val"):
        tracking_summary([tmp_path / "t.csv", tmp_path / "blank.csv"], tmp_path / "s2.csv")
    pd.read_csv(tmp_path / "t.csv").astype({"kl_sum": object}).assign(kl_sum="abc").to_csv(tmp_path / "text.csv",
                                                                                          index=False)
    with pytest.raises(ActivationsError, match=r"text\.csv: column kl_sum must hold numbers; line 2 has 'abc'"):
        tracking_summary([tmp_path / "text.csv"], tmp_path / "s2.csv")
    assert not (tmp_path / "s2.csv").exists()
    assert (summary["dropout"] == 0.2).all()  # the tiny model's (the cross-model table's x)
    # a dropout of more than 6 digits is written whole in both tables (0.1234567 beside a model named so)
    odd = tmp_path / "odd.csv"
    pd.read_csv(divergence_csv).assign(dropout=0.1234567).to_csv(odd, index=False)
    neuron_tracking(tiny.activations, odd, tmp_path / "odd-t.csv", top_k=1, top_words=2)
    tracking_summary([tmp_path / "odd-t.csv"], tmp_path / "odd-s.csv")
    for name in ("odd-t.csv", "odd-s.csv"):
        assert set(pd.read_csv(tmp_path / name, dtype=str).dropout) == {"0.1234567"}, name
    every = neuron_tracking(tiny.activations, divergence_csv, tmp_path / "all.csv", top_k=None, top_words=4)
    live = div[div["rank"].notna()]  # divergence.track: null, every live neuron
    assert sorted(zip(every.layer, every.state, every.neuron)) == sorted(zip(live.layer, live.state, live.neuron))


def test_context_effects_name_every_context():
    values = np.arange(6, dtype=float)
    masks = context_masks(["(", "x", ")", "1", "<eos>", "y"])
    eff = context_effects(values, masks)
    assert eff["paren_mean_in"] == pytest.approx(0.5) and eff["paren_n"] == 2
    assert eff["pre_eos_n"] == 1 and eff["pre_eos_mean_in"] == 3.0
    assert eff["quote_n"] == 0 and np.isnan(eff["quote_mean_in"]) and np.isnan(eff["quote_d"])  # none: no value
    # a text holding every context, the values 0..12 in text order; by hand: the quote's tokens 0-1 (the opening
    # mark inside, the closing one not), the parenthesis' 3-4, before a number 6, before <eos> 7 (not 11: a
    # heading's), the heading line 9-12 with its <eos>
    words = ['"', "a", '"', "(", "b", ")", "c", "1", "<eos>", "=", "T", "=", "<eos>"]
    eff = context_effects(np.arange(13, dtype=float), context_masks(words))
    assert set(eff) == {f"{c}_{m}" for c in CONTEXTS for m in ("n", "mean_in", "mean_out", "diff", "d")}
    total = 78  # 0 + 1 + ... + 12
    want = {"quote": (2, 0.5, (total - 1) / 11), "paren": (2, 3.5, (total - 7) / 11),
            "pre_number": (1, 6, (total - 6) / 12), "pre_eos": (1, 7, (total - 7) / 12),
            "heading": (4, 10.5, (total - 42) / 9)}
    for c, (n, inside, outside) in want.items():
        assert (eff[f"{c}_n"], eff[f"{c}_mean_in"], eff[f"{c}_mean_out"]) == (n, pytest.approx(inside),
                                                                               pytest.approx(outside)), c
        assert eff[f"{c}_diff"] == pytest.approx(inside - outside), c
    # Cohen's d where both sides hold two values or more: quote [0, 1] (variance 0.5) against 2..12 (variance 11)
    assert eff["quote_d"] == pytest.approx((0.5 - 7) / np.sqrt((1 * 0.5 + 10 * 11) / 11))
    assert np.isnan(eff["pre_number_d"]) and np.isnan(eff["pre_eos_d"])  # one token inside


def test_mismatched_inputs_are_refused(tiny, divergence_csv, tmp_path):
    table = pd.read_csv(divergence_csv)
    table["model"] = "d0.7_r0"
    table.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(HistogramError, match=r"other.csv is the divergence table of model d0.7_r0 / text test, but "
                                             r".*activations.h5 is of d0.2_r0 / test"):
        neuron_tracking(tiny.activations, tmp_path / "other.csv", tmp_path / "t.csv", 2, 4)
    # a wider model's table (neuron indices the file lacks): one line, not h5py's "Fancy indexing out of range"
    wider = pd.read_csv(divergence_csv)
    pd.concat([wider, wider[wider["neuron"] == 0].assign(neuron=HIDDEN, rank=pd.NA, dead=True)]).to_csv(
        tmp_path / "wider.csv", index=False)
    with pytest.raises(HistogramError, match=rf"wider.csv has neurons 0-{HIDDEN} per layer and state"):
        neuron_tracking(tiny.activations, tmp_path / "wider.csv", tmp_path / "t.csv", 2, 4)
    with pytest.raises(ActivationsError, match="divergence.track=0"):
        neuron_tracking(tiny.activations, divergence_csv, tmp_path / "t.csv", 0, 4)
    with pytest.raises(ActivationsError, match="gone.csv: tracking table not found"):
        tracking_summary([tmp_path / "gone.csv"], tmp_path / "s.csv")
    assert not (tmp_path / "t.csv").exists()


def test_the_same_word_is_the_same_word_read_not_a_token_id(tiny, divergence_csv, tmp_path):
    """Each word's tokens are grouped by the word as the model read it: a damaged id in the file (negative, or
    billions) stopped the tracking with numpy's unnamed error or asked for gigabytes of counts; the ids are not read."""
    import shutil

    intact = neuron_tracking(tiny.activations, divergence_csv, tmp_path / "intact.csv", top_k=2, top_words=4)
    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f["tokens/ids"][10] = -1
        f["tokens/ids"][11] = 2_000_000_000
    again = neuron_tracking(damaged, divergence_csv, tmp_path / "damaged.csv", top_k=2, top_words=4)
    pd.testing.assert_frame_equal(again, intact)
    assert (tmp_path / "damaged.csv").read_bytes() == (tmp_path / "intact.csv").read_bytes()


def test_a_frozen_neuron_has_no_strongest_context_and_a_dead_layer_no_rows(degenerate, tmp_path, caplog):
    with h5py.File(degenerate.activations, "r") as f:
        for state in ("h", "c"):  # frozen: one value after every token, far from 0 (not dead)
            v = f[f"layer1/{state}"][:, degenerate.constant_neuron]
            assert np.ptp(v) == 0 and abs(v[0]) > 0.4
        assert np.abs(f["layer2/h"][:]).max() < 1e-6  # every h of layer 2 is dead
    out = neuron_tracking(degenerate.activations, degenerate.divergence, tmp_path / "t.csv", top_k=HIDDEN, top_words=3)
    assert "layer2/h has no live (ranked) neuron: none described" in caplog.text
    assert sorted(set(zip(out.layer, out.state))) == [(1, "c"), (1, "h"), (2, "c")]
    frozen = out[(out.layer == 1) & (out.neuron == degenerate.constant_neuron)]
    assert len(frozen) == 2 and frozen[[f"{c}_d" for c in CONTEXTS]].isna().all().all()
    assert (frozen.strongest_context == "").all() and frozen.strongest_d.isna().all()
    moving = out.drop(frozen.index)
    assert moving.strongest_context.isin(CONTEXTS).all() and moving.strongest_d.notna().all()
    # a table of layer 2's h alone: no neuron to describe, a CSV with its header, and a summary of it
    div = pd.read_csv(degenerate.divergence)
    div[(div.layer == 2) & (div.state == "h")].to_csv(tmp_path / "dead-only.csv", index=False)
    empty = neuron_tracking(degenerate.activations, tmp_path / "dead-only.csv", tmp_path / "e.csv", top_k=3,
                            top_words=3)
    assert empty.empty and list(pd.read_csv(tmp_path / "e.csv").columns) == list(out.columns)
    summary = tracking_summary([tmp_path / "t.csv", tmp_path / "e.csv"], tmp_path / "s.csv")
    assert len(summary) == 3 and set(summary["rank"]) == {1}


@pytest.mark.parametrize("edit, said", [
    (lambda t: t.drop(columns="rank").to_csv(index=False), "missing columns rank"),
    (lambda t: t.drop(columns=["kl_sum", "lowest_words"]).to_csv(index=False),
     "missing columns kl_sum, lowest_words"),
    (lambda t: "", "not a readable CSV (No columns to parse from file)"),
])
def test_a_tracking_table_short_of_a_column_or_empty_is_one_error_naming_it(tiny, divergence_csv, tmp_path, edit,
                                                                            said):
    """Checked only once joined, a part without rank passed (its rows ranked NaN, sorted last and dropped from the
    summary) and an empty file stopped the summary with pandas' EmptyDataError, naming no file."""
    good = tmp_path / "t.csv"
    table = neuron_tracking(tiny.activations, divergence_csv, good, top_k=2, top_words=3)
    bad = tmp_path / "bad.csv"
    bad.write_text(edit(table))
    with pytest.raises(ActivationsError) as err:
        tracking_summary([good, bad], tmp_path / "s.csv")
    assert str(err.value) == f"{bad}: {said}"
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("rank_by", ["kl_pq", "kl_qp", "kl_sum"])
def test_tracking_tables_say_what_the_ranks_follow_and_carry_its_value(tiny, divergence_csv, tmp_path, rank_by):
    """divergence.rank_by kl_pq: with kl_sum alone beside it, "rank 1" could stand by a smaller kl_sum than rank 2;
    both tables name the measure the ranks follow and hold its value (every table all three, one schema)."""
    from lstmscope.divergence import neuron_divergence

    div = neuron_divergence(divergence_csv.parent / "h.h5", tmp_path / "d.csv", tmp_path / "dead.csv", 1e-10, 0.01,
                            0.9, rank_by=rank_by)
    out = neuron_tracking(tiny.activations, tmp_path / "d.csv", tmp_path / "t.csv", top_k=3, top_words=3)
    again = pd.read_csv(tmp_path / "t.csv")
    assert (again["rank_by"] == rank_by).all() and len(again) == LAYERS * 2 * 3
    keyed = div.set_index(["layer", "state", "neuron"])
    for r in again.itertuples():
        for m in ("kl_sum", "kl_pq", "kl_qp"):
            assert getattr(r, m) == pytest.approx(keyed.loc[(r.layer, r.state, r.neuron), m], rel=1e-5)
    for _, group in again.groupby(["layer", "state"]):  # the ranked measure falls with the rank
        ordered = group.sort_values("rank")
        assert ordered["rank"].tolist() == [1, 2, 3] and ordered[rank_by].is_monotonic_decreasing
    summary = tracking_summary([tmp_path / "t.csv"], tmp_path / "s.csv", per_group=1)
    written = pd.read_csv(tmp_path / "s.csv")
    assert list(written.columns) == list(summary.columns) and (written["rank_by"] == rank_by).all()
    top = div[div["rank"] == 1].set_index(["layer", "state"])[rank_by]
    assert [top[(r.layer, r.state)] for r in written.itertuples()] == pytest.approx(written[rank_by].tolist(),
                                                                                   rel=2e-3)
    assert list(out.columns[out.columns.get_loc("rank"):][:5]) == ["rank", "rank_by", "kl_sum", "kl_pq", "kl_qp"]

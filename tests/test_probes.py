"""context_probes: a layer, its best neuron and the word alone against the tracking contexts, on real WikiText-2 text."""
from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lstmscope.activations import TextSpec, dump_activations
from lstmscope.figures import plt
from lstmscope.histogram import HistogramError
from lstmscope import probe_figures
from lstmscope.probe_figures import probes_vs_dropout
from lstmscope import probes as probes_module
from lstmscope.probes import (AUC_COLUMNS, CONTEXTS, MIN_TOKENS, PROBE_COLUMNS, aucs_of_ranks, best_of, context_probes,
                              expected_best_of_random, probe_view, read_probes, spans, split_point, text_baselines,
                              window_features, word_scores)
from lstmscope.tracking import START_UP, context_masks
from lstmscope.vocabulary import read_tokens

from neurons_support import HIDDEN, LAYERS, divergence_csv, tiny, write_divergence  # noqa: F401  (fixtures)
from wikitext_data import split_path

LONG = TextSpec(name="test", split="test", offset=0, tokens=4000)  # long enough for four of the five contexts


@pytest.fixture(scope="module")
def long_text(tiny, tmp_path_factory):
    """The shared model's activations on the first 4000 tokens of the test split, their divergence table and the
    probes of both (read-only)."""
    folder = tmp_path_factory.mktemp("probes-long")
    activations = folder / "long.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, LONG, activations, chunk_tokens=256,
                     model_info={"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0})
    divergence = write_divergence(activations, folder)
    table = context_probes(activations, divergence, folder / "probes.csv", test_share=0.25, regularisation=1.0,
                           kl_neurons=3, window=2)
    return activations, divergence, folder / "probes.csv", table


def test_spans_and_the_cut_by_hand():
    assert spans(np.array([0, 1, 1, 0, 1, 0], bool)) == 2
    assert spans(np.array([1, 1, 0, 1], bool)) == 2
    assert spans(np.array([], bool)) == 0
    # 1000 tokens: the first 50 (start-up) left out, a fifth of the 950 others (190) tests
    assert split_point(1000, 0.2) == (START_UP, 810)
    assert split_point(80, 0.25) == (0, 60)  # a short text keeps its start (as the extreme words do)
    for share in (0, 1, -0.1):
        with pytest.raises(ValueError, match=f"probe.test_share={share}"):
            split_point(1000, share)


def test_aucs_of_ranks_are_sklearns_ties_included():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(300, 5)), 1)  # many ties
    values[:, 4] = 1.0  # a constant neuron: 0.5
    inside = rng.random(300) < 0.2
    expected = [roc_auc_score(inside, values[:, j]) for j in range(5)]
    aucs = aucs_of_ranks(rankdata(values, axis=0), inside)
    assert aucs == pytest.approx(expected, abs=1e-12) and aucs[4] == 0.5


def test_the_best_neuron_is_furthest_from_one_half_either_way():
    aucs = np.array([0.6, 0.52, 0.05, 0.45, 0.95])
    assert best_of(aucs, np.arange(5)) == 2  # 0.45 from one half, below it
    assert best_of(aucs, np.array([0, 1, 3, 4])) == 4
    assert best_of(aucs, np.array([0, 1, 3])) == 0
    assert best_of(np.array([0.4, 0.6]), np.array([0, 1])) == 0  # the first of equals


def test_the_random_control_is_every_draw_averaged():
    """The closed form against all C(L, k) draws enumerated, ties and dead neurons included."""
    from itertools import combinations

    rng = np.random.default_rng(2)
    train = np.round(rng.random(9), 1)  # ties: the lower index preferred, as best_of does
    test = rng.random(9)
    live = np.array([0, 1, 2, 4, 5, 7, 8])  # 3 and 6 dead
    for k in (1, 2, 3, 7, 9):
        draws = list(combinations(live, min(k, len(live))))
        expected = np.mean([test[best_of(train, np.array(d))] for d in draws])
        assert expected_best_of_random(train, test, live, k) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(expected_best_of_random(train, test, np.array([], int), 3))


def test_window_features_by_hand():
    x = window_features("a b a c".split(), 2).toarray()
    # words a b c (ids 0 1 2); block 0 = the word, block 1 = the word before (none at the start)
    assert x.tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0]]
    # a window longer than the text: the blocks past its start stay empty
    assert window_features(["a", "b"], 4).toarray().tolist() == [[1, 0, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]]
    assert window_features([], 3).shape == (0, 0)


def test_word_scores_by_hand():
    # a: 1 of 2 inside, b: 2 of 3, c: 0 of 1; the part's share 3/6 = 0.5 is one pseudo-token of every word
    scores = word_scores(list("aabbbc"), np.array([1, 0, 1, 1, 0, 0], bool), list("abcd"))
    assert scores == pytest.approx([1.5 / 3, 2.5 / 4, 0.5 / 2, 0.5])


def _real_words(n: int = 6000) -> list[str]:
    return read_tokens(split_path("test"))[:n]


def test_planted_neurons_are_found_on_real_contexts():
    """States of a made-up layer on real WikiText-2 text: neuron 3 is the quotation mask plus noise, neuron 1 the
    parentheses' mask negated plus noise, the rest noise. The probes find them, in their direction, and score them on
    the test part only."""
    words = _real_words()
    masks = context_masks(words)
    rng = np.random.default_rng(5)
    values = rng.normal(size=(len(words), 6))
    values[:, 3] += 2.0 * masks["quote"]
    values[:, 1] -= 2.0 * masks["paren"]
    rows = {r["context"]: r for r in probe_view(values, masks, 0.25, 1.0, np.array([0, 2, 4]), np.arange(6))}
    skip, cut = split_point(len(words), 0.25)
    for context, neuron, sign in (("quote", 3, 1), ("paren", 1, -1)):
        r = rows[context]
        y = masks[context][cut:]
        assert int(y.sum()) >= MIN_TOKENS
        assert r["neuron"] == neuron and (r["neuron_train_auc"] - 0.5) * sign > 0.3
        assert r["neuron_auc"] == pytest.approx(roc_auc_score(y, sign * values[cut:, neuron])) and r["neuron_auc"] > 0.8
        assert r["layer_auc"] > 0.8 and r["converged"] is True
        # the top-KL candidates lack the planted neuron: their best is noise; three of the six drawn at random hold it
        # in half the draws
        assert r["kl_neuron"] in (0, 2, 4) and abs(r["kl_neuron_auc"] - 0.5) < 0.15
        assert 0.6 < r["random_neurons_auc"] < r["neuron_auc"]
    # noise alone tells nothing (both contexts scored: enough of them in either part)
    assert all(abs(rows[c]["neuron_auc"] - 0.5) < 0.15 and abs(rows[c]["layer_auc"] - 0.5) < 0.15
               for c in ("pre_eos", "heading"))


def test_a_rare_context_has_no_scores_and_says_how_rare():
    words = _real_words(2000)
    masks = {c: np.zeros(len(words), bool) for c in CONTEXTS}
    masks["quote"][[100, 101, 102, 1900, 1901]] = True  # 3 in training, 2 in the test part
    rows = {r["context"]: r for r in probe_view(np.random.default_rng(0).normal(size=(2000, 3)), masks, 0.25, 1.0,
                                                np.arange(3), np.arange(3))}
    base = text_baselines(masks, words, 0.25, 1.0, 3)["quote"]
    assert (base["train_inside"], base["test_inside"], base["test_spans"]) == (3, 2, 1)
    assert np.isnan(base["word_auc"]) and np.isnan(base["window_auc"])
    assert all(np.isnan(rows["quote"][c]) for c in ("layer_auc", "neuron_auc", "kl_neuron_auc", "random_neurons_auc"))
    assert np.isnan(rows["quote"]["neuron"]) and rows["quote"]["converged"] == ""


def test_probes_of_a_real_model_match_a_direct_computation(long_text):
    """Every scored row of the table, recomputed from the file with h5py and scikit-learn: the cut, the best neuron
    (chosen by its training AUC among all neurons, or the top-KL ones, and scored on the test part in that
    direction), the random control (every draw of 3 live neurons enumerated), the word baseline (counted here), the
    window of the last two words (its one-hot blocks built here) and the layer's probe."""
    from itertools import combinations

    from scipy.sparse import lil_matrix

    activations, divergence, csv, table = long_text
    assert list(table.columns) == PROBE_COLUMNS and len(table) == LAYERS * 2 * len(CONTEXTS)
    back = read_probes([csv])  # the file holds the table (6 significant digits)
    assert back[AUC_COLUMNS].to_numpy() == pytest.approx(table[AUC_COLUMNS].to_numpy(dtype=float), rel=1e-5,
                                                         nan_ok=True)
    assert back["neuron"].tolist() == pytest.approx(table["neuron"].astype(float).tolist(), nan_ok=True)
    div = pd.read_csv(divergence)
    with h5py.File(activations) as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        masks = context_masks([w.decode() for w in f["tokens/split_words"][:]])
        T = len(words)
        cut = T - round(0.25 * (T - START_UP))
        scored = 0
        for r in table.itertuples():
            y = masks[r.context]
            y_train, y_test = y[START_UP:cut], y[cut:]
            assert (r.train_tokens, r.test_tokens) == (cut - START_UP, T - cut)
            assert (r.train_inside, r.test_inside) == (y_train.sum(), y_test.sum())
            if min(y_train.sum(), y_test.sum()) < MIN_TOKENS:
                assert np.isnan(r.layer_auc)
                continue
            scored += 1
            x = f[f"layer{r.layer}/{r.state}"][:].astype(np.float64)
            view = div[(div["layer"] == r.layer) & (div["state"] == r.state)].set_index("neuron")
            top = view["rank"].dropna().sort_values().index[:3]
            live = sorted(view["rank"].dropna().index)
            train_aucs = {j: roc_auc_score(y_train, x[START_UP:cut, j]) for j in range(HIDDEN)}
            test_aucs = {j: roc_auc_score(y_test, (1 if train_aucs[j] >= 0.5 else -1) * x[cut:, j])
                         for j in range(HIDDEN)}

            def best(among):  # furthest from one half, the lowest index of equals
                return min(among, key=lambda j: (-abs(train_aucs[j] - 0.5), j))

            for neuron, train_auc, auc, among in ((r.neuron, r.neuron_train_auc, r.neuron_auc, range(HIDDEN)),
                                                  (r.kl_neuron, r.kl_neuron_train_auc, r.kl_neuron_auc, top)):
                assert abs(train_aucs[neuron] - 0.5) == pytest.approx(abs(train_aucs[best(among)] - 0.5), abs=1e-12)
                assert train_auc == pytest.approx(train_aucs[neuron], abs=1e-6)
                assert auc == pytest.approx(test_aucs[neuron], abs=1e-6)
            random = np.mean([test_aucs[best(draw)] for draw in combinations(live, 3)])
            assert r.random_neurons_auc == pytest.approx(random, abs=1e-6)
            assert r.kl_neuron_rank == view.loc[r.kl_neuron, "rank"] <= 3
            assert pd.isna(r.neuron_kl_rank) == pd.isna(view.loc[r.neuron, "rank"])
            inside, count = Counter(), Counter()
            for w, yy in zip(words[START_UP:cut], y_train):
                inside[w] += yy
                count[w] += 1
            prior = y_train.mean()
            word = [(inside[w] + prior) / (count[w] + 1) if w in count else prior for w in words[cut:]]
            assert r.word_auc == pytest.approx(roc_auc_score(y_test, word), abs=1e-6)
            ids = {w: i for i, w in enumerate(dict.fromkeys(words))}
            window = lil_matrix((T, 2 * len(ids)))
            for t, w in enumerate(words):
                window[t, ids[w]] = 1
                if t:
                    window[t, len(ids) + ids[words[t - 1]]] = 1
            window = window.tocsr()
            probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, tol=1e-6).fit(
                window[START_UP:cut], y_train)
            assert r.window_auc == pytest.approx(roc_auc_score(y_test, probe.decision_function(window[cut:])),
                                                 abs=1e-4)
            mean, sd = x[START_UP:cut].mean(0), x[START_UP:cut].std(0)
            sd[sd == 0] = 1
            probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000, tol=1e-6).fit(
                (x[START_UP:cut] - mean) / sd, y_train)
            assert r.layer_auc == pytest.approx(roc_auc_score(y_test, probe.decision_function((x[cut:] - mean) / sd)),
                                                abs=1e-4)
    assert scored >= 12  # four contexts of the five in every view


def test_the_word_alone_tells_a_heading_and_the_end_of_a_paragraph(long_text):
    """What WikiText-2's own words give away, whatever the model: a heading is "=" and its title, the token before
    <eos> mostly a full stop; inside quotation marks no single word says so."""
    table = long_text[3]
    by_context = table.groupby("context")["word_auc"].first()
    assert by_context["heading"] > 0.9 and by_context["pre_eos"] > 0.9
    assert by_context["quote"] < 0.75


@pytest.mark.parametrize("settings, message", [
    ((1, 1.0, 3, 2), r"^probe.test_share=1: must lie between 0 and 1"),
    ((0.25, 0, 3, 2), r"^probe.regularisation=0: must be > 0$"),
    ((0.25, 1.0, 0, 2), r"^probe.kl_neurons=0: must be >= 1$"),
    ((0.25, 1.0, 3, 0), r"^probe.window=0: must be >= 1$"),
])
def test_each_wrong_setting_is_refused_by_its_key(long_text, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        context_probes(long_text[0], long_text[1], tmp_path / "p.csv", *settings)
    assert not (tmp_path / "p.csv").exists()


def test_a_regression_that_stops_short_is_written_and_says_so(long_text, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(probes_module, "MAX_ITER", 1)
    table = context_probes(long_text[0], long_text[1], tmp_path / "p.csv", 0.25, 1.0, 3, 2)
    scored = table[table["layer_auc"].notna()]
    assert len(scored) and not scored["converged"].any() and table["layer_auc"].between(0, 1).sum() == len(scored)
    assert "did not converge in 1 iterations" in caplog.text
    assert long_text[3].loc[long_text[3]["layer_auc"].notna(), "converged"].all()


def test_another_models_table_is_refused(long_text, divergence_csv, tmp_path):
    activations = long_text[0]
    # the shared model's divergence table is of its 400-token text: another text's (same model, same width) is fine,
    # another width is not
    other = pd.read_csv(divergence_csv)
    other = other[other["neuron"] < HIDDEN - 1]
    other.to_csv(tmp_path / "narrow.csv", index=False)
    with pytest.raises(HistogramError, match="narrow.csv"):
        context_probes(activations, tmp_path / "narrow.csv", tmp_path / "p.csv", 0.25, 1.0, 3, 2)
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(layer_auc=t["layer_auc"] * 3), "layer_auc is"),
    (lambda t: pd.concat([t, t.iloc[[0]]]), "repeats layer 1 c quote"),
    (lambda t: t.drop(columns="word_auc"), "word_auc"),
    (lambda t: t.assign(test_spans=""), "test_spans"),
])
def test_a_damaged_probe_table_is_one_error_naming_it(long_text, tmp_path, edit, message):
    damaged = tmp_path / "damaged.csv"
    edit(pd.read_csv(long_text[2])).to_csv(damaged, index=False)
    with pytest.raises(ValueError, match=message) as err:
        read_probes([damaged])
    assert "damaged.csv" in str(err.value)


def test_the_figure_across_models(long_text, tmp_path, monkeypatch):
    """Two models' tables (the second the first with other scores): one panel per scored context and view, a point
    per model and probe at its dropout, chance at 0.5; a context without scores says so."""
    first = pd.read_csv(long_text[2])
    second = first.assign(model="d0.8_r0", dropout=0.8, layer_auc=first["layer_auc"] * 0.9)
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    first.to_csv(paths[0], index=False)
    second.to_csv(paths[1], index=False)
    kept = []
    monkeypatch.setattr(probe_figures, "save_figure", lambda fig, *a, **k: kept.append(fig))
    table = probes_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg", window=2)
    assert list(table["model"].unique()) == ["d0.2_r0", "d0.8_r0"]
    assert pd.read_csv(tmp_path / "t.csv")["layer_auc"].tolist() == pytest.approx(table["layer_auc"].tolist(), rel=1e-5,
                                                                                        nan_ok=True)
    scored = [c for c in CONTEXTS if table.loc[table["context"] == c, "layer_auc"].notna().any()]  # a row each
    assert 0 < len(scored) < len(CONTEXTS)  # (this text is too short for some: test_a_context_scored_in_no_view_…)
    axes = np.array(kept[0].axes[:len(scored) * LAYERS * 2]).reshape(len(scored), LAYERS * 2)
    titles = [ax.get_title() for ax in axes[0]]
    assert titles == ["layer 1, hidden state h", "layer 1, cell state c", "layer 2, hidden state h",
                      "layer 2, cell state c"]
    lows = []
    for i, context in enumerate(scored):  # each row its own range, holding every score of the row, zoomed in on them
        scores = table.loc[table["context"] == context, AUC_COLUMNS].to_numpy(dtype=float)
        bottom, top = axes[i, 0].get_ylim()
        assert all(ax.get_ylim() == (bottom, top) for ax in axes[i])
        if np.isfinite(scores).any():
            low = np.nanmin(scores)
            assert bottom < low and np.nanmax(scores) < top <= 1.02  # (a point at 1 not cut by the frame)
            assert low - bottom <= 0.021 or bottom == pytest.approx(0.9)  # no room below the lowest but a margin
            lows.append(bottom)
    assert len(set(lows)) > 1, lows  # the rows' scores differ: so do their ranges
    legend = [t.get_text() for t in kept[0].legends[0].get_texts()]
    assert "the last 2 words (no state)" in legend and "the word alone (no state)" in legend
    for window, label in ((1, "the last 1 word (no state)"), (None, "the last words (no state)")):
        plt.close(kept.pop())
        probes_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg", window=window)
        assert label in [t.get_text() for t in kept[-1].legends[0].get_texts()]
    plt.close(kept.pop())  # a figure save_figure would have closed
    for i, context in enumerate(scored):
        for j, (layer, state) in enumerate([(1, "h"), (1, "c"), (2, "h"), (2, "c")]):
            ax = axes[i, j]
            rows = table[(table["context"] == context) & (table["layer"] == layer) & (table["state"] == state)]
            solid = [line for line in ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) > 0
                     and line.get_color() != "0.55" and list(line.get_xdata()) != [0, 1]]
            if rows["layer_auc"].isna().all():
                assert "too few tokens" in " ".join(t.get_text() for t in ax.texts)
                continue
            assert list(solid[0].get_xdata()) == [0.2, 0.8]
            assert list(solid[0].get_ydata()) == pytest.approx(rows.sort_values("dropout")["layer_auc"].tolist())
            assert any(list(line.get_ydata()) == [0.5, 0.5] for line in ax.get_lines())  # chance
    other_text = first.assign(text="train")
    other_text.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match=r"m.csv is a context probe table of text train, .*a.csv of text test"):
        probes_vs_dropout([paths[0], tmp_path / "m.csv"], tmp_path / "x.csv", tmp_path / "x.png", tmp_path / "x.svg")
    first.assign(text=["train"] + ["test"] * (len(first) - 1)).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ValueError, match=r"mixed.csv: the rows of 2 texts"):
        read_probes([tmp_path / "mixed.csv"])


def test_a_context_scored_in_no_view_has_no_row_and_the_title_names_it(long_text, tmp_path, monkeypatch):
    """A text too short for a context (no view scored: the train text's "before <eos>" on the default run) drew a row
    of empty panels; the row is left out and the title says which and why."""
    table = pd.read_csv(long_text[2])
    auc = [c for c in table.columns if c.endswith("_auc")]
    table.loc[table["context"] == "pre_eos", auc] = np.nan
    path = tmp_path / "a.csv"
    table.to_csv(path, index=False)
    kept = []
    monkeypatch.setattr(probe_figures, "save_figure", lambda fig, *a, **k: kept.append(fig))
    probes_vs_dropout([path], tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg")
    fig = kept.pop()
    scored = [c for c in CONTEXTS if table.loc[table["context"] == c, "layer_auc"].notna().any()]
    assert "pre_eos" not in scored and len(scored) >= 2
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == [f"{probe_figures.CONTEXT_NAME[c]}\nAUC on the held-out part" for c in scored]
    left_out = " or ".join(probe_figures.CONTEXT_NAME[c] for c in CONTEXTS if c not in scored)
    assert "before <eos>" in left_out
    assert fig._suptitle.get_text().replace("\n", " ").endswith(f"; no row {left_out}: too few tokens in that context")
    plt.close(fig)

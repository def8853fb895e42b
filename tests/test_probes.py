"""context_probes: a layer, its best neuron and the word alone against the tracking contexts, on real WikiText-2 text."""
from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from lstmscope.activations import TextSpec, dump_activations
from lstmscope.activations_file import ActivationsError
from lstmscope.histogram import HistogramError
from lstmscope import probe_figures
from lstmscope.probe_figures import probes_vs_dropout
from lstmscope.probes import (AUC_COLUMNS, CONTEXTS, MIN_TOKENS, PROBE_COLUMNS, best_neuron, column_aucs,
                              context_probes, probe_view, read_probes, spans, split_point, word_scores)
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
                           kl_neurons=3)
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


def test_column_aucs_are_sklearns_ties_included():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(300, 5)), 1)  # many ties
    values[:, 4] = 1.0  # a constant neuron: 0.5
    inside = rng.random(300) < 0.2
    expected = [roc_auc_score(inside, values[:, j]) for j in range(5)]
    assert column_aucs(values, inside) == pytest.approx(expected, abs=1e-12)
    assert column_aucs(values, inside)[4] == 0.5


def test_the_best_neuron_is_furthest_from_one_half_either_way():
    rng = np.random.default_rng(1)
    inside = rng.random(400) < 0.3
    values = rng.normal(size=(400, 4))
    values[:, 0] += 0.5 * inside   # a little higher inside
    values[:, 2] -= 3.0 * inside   # much lower inside: the best, with an AUC below one half
    neuron, auc = best_neuron(values, inside, np.arange(4))
    assert neuron == 2 and auc == pytest.approx(roc_auc_score(inside, values[:, 2])) and auc < 0.1
    neuron, auc = best_neuron(values, inside, np.array([0, 1, 3]))  # among the others
    assert neuron == 0 and auc > 0.6


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
    rows = {r["context"]: r for r in probe_view(values, masks, words, 0.25, 1.0, np.array([0, 2, 4]))}
    skip, cut = split_point(len(words), 0.25)
    for context, neuron, sign in (("quote", 3, 1), ("paren", 1, -1)):
        r = rows[context]
        y = masks[context][cut:]
        assert r["test_inside"] == int(y.sum()) >= MIN_TOKENS and r["train_inside"] == int(masks[context][skip:cut].sum())
        assert r["test_spans"] == spans(y)
        assert r["neuron"] == neuron and (r["neuron_train_auc"] - 0.5) * sign > 0.3
        assert r["neuron_auc"] == pytest.approx(roc_auc_score(y, sign * values[cut:, neuron])) and r["neuron_auc"] > 0.8
        assert r["layer_auc"] > 0.8 and r["converged"] is True
        # the top-KL candidates lack the planted neuron: their best is noise
        assert r["kl_neuron"] in (0, 2, 4) and abs(r["kl_neuron_auc"] - 0.5) < 0.15
    # noise alone tells nothing
    assert all(abs(rows[c]["neuron_auc"] - 0.5) < 0.15 for c in ("pre_eos", "heading") if np.isfinite(rows[c]["neuron_auc"]))


def test_a_rare_context_has_no_scores_and_says_how_rare():
    words = _real_words(2000)
    masks = {c: np.zeros(len(words), bool) for c in CONTEXTS}
    masks["quote"][[100, 101, 102, 1900, 1901]] = True  # 3 in training, 2 in the test part
    rows = {r["context"]: r for r in probe_view(np.random.default_rng(0).normal(size=(2000, 3)), masks, words, 0.25,
                                                1.0, np.arange(3))}
    assert (rows["quote"]["train_inside"], rows["quote"]["test_inside"], rows["quote"]["test_spans"]) == (3, 2, 1)
    assert all(np.isnan(rows["quote"][c]) for c in AUC_COLUMNS) and np.isnan(rows["quote"]["neuron"])


def test_probes_of_a_real_model_match_a_direct_computation(long_text):
    """Every scored row of the table, recomputed from the file with h5py and scikit-learn: the cut, the best neuron
    (chosen by its training AUC among all neurons, or the top-KL ones, and scored on the test part in that
    direction), the word baseline (counted here) and the layer's probe."""
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
            for neuron, auc, among in ((r.neuron, r.neuron_auc, range(HIDDEN)), (r.kl_neuron, r.kl_neuron_auc, top)):
                train_aucs = {j: roc_auc_score(y_train, x[START_UP:cut, j]) for j in among}
                best = max(train_aucs, key=lambda j: abs(train_aucs[j] - 0.5))
                assert abs(train_aucs[neuron] - 0.5) == pytest.approx(abs(train_aucs[best] - 0.5), abs=1e-12)
                sign = 1 if train_aucs[neuron] >= 0.5 else -1
                assert auc == pytest.approx(roc_auc_score(y_test, sign * x[cut:, neuron]), abs=1e-6)
            assert r.kl_neuron_rank == view.loc[r.kl_neuron, "rank"] <= 3
            assert pd.isna(r.neuron_kl_rank) == pd.isna(view.loc[r.neuron, "rank"])
            inside, count = Counter(), Counter()
            for w, yy in zip(words[START_UP:cut], y_train):
                inside[w] += yy
                count[w] += 1
            prior = y_train.mean()
            word = [(inside[w] + prior) / (count[w] + 1) if w in count else prior for w in words[cut:]]
            assert r.word_auc == pytest.approx(roc_auc_score(y_test, word), abs=1e-6)
            mean, sd = x[START_UP:cut].mean(0), x[START_UP:cut].std(0)
            sd[sd == 0] = 1
            probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000).fit(
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


def test_wrong_settings_and_another_models_table_are_refused(long_text, divergence_csv, tmp_path):
    activations = long_text[0]
    with pytest.raises(ActivationsError, match=r"probe.regularisation=0"):
        context_probes(activations, long_text[1], tmp_path / "p.csv", 0.25, 0, 3)
    with pytest.raises(ValueError, match=r"probe.test_share=1"):
        context_probes(activations, long_text[1], tmp_path / "p.csv", 1, 1.0, 3)
    # the shared model's divergence table is of its 400-token text: another text's (same model, same width) is fine,
    # another width is not
    other = pd.read_csv(divergence_csv)
    other = other[other["neuron"] < HIDDEN - 1]
    other.to_csv(tmp_path / "narrow.csv", index=False)
    with pytest.raises(HistogramError, match="narrow.csv"):
        context_probes(activations, tmp_path / "narrow.csv", tmp_path / "p.csv", 0.25, 1.0, 3)
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
    table = probes_vs_dropout(paths, tmp_path / "t.csv", tmp_path / "f.png", tmp_path / "f.svg")
    assert list(table["model"].unique()) == ["d0.2_r0", "d0.8_r0"]
    assert pd.read_csv(tmp_path / "t.csv")["layer_auc"].tolist() == pytest.approx(table["layer_auc"].tolist(), rel=1e-5,
                                                                                        nan_ok=True)
    axes = np.array(kept[0].axes[:len(CONTEXTS) * LAYERS * 2]).reshape(len(CONTEXTS), LAYERS * 2)
    titles = [ax.get_title() for ax in axes[0]]
    assert titles == ["layer 1, h", "layer 1, c", "layer 2, h", "layer 2, c"]
    for i, context in enumerate(CONTEXTS):
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
    mixed = first.assign(text="train")
    mixed.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="mix texts"):
        probes_vs_dropout([paths[0], tmp_path / "m.csv"], tmp_path / "x.csv", tmp_path / "x.png", tmp_path / "x.svg")

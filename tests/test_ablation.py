"""Ablation of neurons on the small real model: the removed unit, the chosen neurons, the numbers, the errors."""
from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lstmscope.ablation import ablated_model, choose_ablations, run_ablation, text_log_probabilities
from lstmscope.ablation_file import AblationError, read_ablation, read_ablation_table
from lstmscope.ablation_table import change_interval, word_effects, write_ablation_table
from lstmscope.activations_file import ActivationsError
from lstmscope.histogram import HistogramError
from lstmscope.model import cpu_kernels, load_checkpoint, state_dict_digest
from lstmscope.provenance import sha256_file

from neurons_support import (HIDDEN, LAYERS, degenerate, divergence_csv, prose_window, reference_log_probs,  # noqa: F401
                             tiny)


@pytest.fixture(scope="module")
def model_and_ids(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:].astype(np.int64)
    return model, ids


def test_the_intact_model_reads_the_text_as_the_dump_did(tiny, model_and_ids):
    model, ids = model_and_ids
    logp = text_log_probabilities(model, ids, block_tokens=50)  # blocks carry the state
    with h5py.File(tiny.activations) as f:
        stored = f["log_expectancy"][:]
    assert np.isnan(logp[0]) and np.isnan(stored[0])
    np.testing.assert_allclose(logp[1:], stored[1:], atol=2e-5)
    np.testing.assert_allclose(logp[1:120], reference_log_probs(model, ids[:120])[1:], atol=1e-4)


@pytest.mark.parametrize("layer,neurons", [(1, (4,)), (2, (7,)), (1, (0, 3, 11)), (2, (2, 9))])
def test_removing_the_weights_that_read_a_unit_equals_holding_its_h_at_zero(model_and_ids, layer, neurons):
    model, ids = model_and_ids
    ids = ids[:150]
    before = state_dict_digest(model)
    got = text_log_probabilities(ablated_model(model, layer, neurons), ids, block_tokens=40)
    want = reference_log_probs(model, ids, [(layer, j) for j in neurons])
    np.testing.assert_allclose(got[1:], want[1:], atol=1e-4)
    intact = reference_log_probs(model, ids)
    assert np.abs(want[1:] - intact[1:]).max() > 1e-3, "the ablation must change something"
    assert state_dict_digest(model) == before, "the original model was changed"


@pytest.mark.parametrize("layer,neurons,values", [(1, (4,), (0.3,)), (2, (9, 2), (-0.25, 0.6))])
def test_a_unit_held_at_a_value_moves_what_reads_it_into_the_biases(model_and_ids, layer, neurons, values):
    """Mean ablation: the readers' columns set to 0 and value x column added to their biases equals holding h at
    that value at every step (the step-by-step equations in float64)."""
    model, ids = model_and_ids
    ids = ids[:150]
    got = text_log_probabilities(ablated_model(model, layer, neurons, values), ids, block_tokens=40)
    held = {(layer, j): v for j, v in zip(neurons, values)}
    want = reference_log_probs(model, ids, list(held), held)
    np.testing.assert_allclose(got[1:], want[1:], atol=1e-4)
    at_zero = reference_log_probs(model, ids, list(held))
    assert np.abs(want[1:] - at_zero[1:]).max() > 1e-3, "the value must matter"
    with pytest.raises(AblationError, match="1 values for 2 neurons of layer 2"):
        ablated_model(model, 2, (1, 2), (0.5,))
    unbiased = square_model(model)
    unbiased.decoder.bias = None  # nowhere to move what the decoder read from the unit
    with pytest.raises(AblationError, match=r"layer 2: a reader of its units has no bias .* ablation.method zero "
                                            r"\(lstmscope-ablate --method zero\)"):
        ablated_model(unbiased, 2, (1,), (0.5,))
    assert (ablated_model(unbiased, 2, (1,), (0.0,)).decoder.weight[:, 1] == 0).all()  # held at 0 needs none


@pytest.mark.parametrize("values", [None, (0.4, -0.3)])
@pytest.mark.parametrize("layer", [1, 2, 3])
def test_removal_in_a_three_layer_model_equals_holding_h_at_a_value(model_and_ids, layer, values):
    from lstmscope.model import LSTMLanguageModel, ModelConfig

    _, ids = model_and_ids
    torch.manual_seed(11)
    model = LSTMLanguageModel(ModelConfig(800, 6, 9, 3, 0.0)).eval()  # a middle layer is read by the next LSTM layer
    got = text_log_probabilities(ablated_model(model, layer, (2, 7), values), ids[:80], block_tokens=30)
    held = None if values is None else {(layer, 2): values[0], (layer, 7): values[1]}
    want = reference_log_probs(model, ids[:80], [(layer, 2), (layer, 7)], held)
    assert np.abs(want[1:] - reference_log_probs(model, ids[:80])[1:]).max() > 1e-4  # far more than the tolerance
    np.testing.assert_allclose(got[1:], want[1:], atol=1e-5)


def test_a_tied_decoder_is_untied_before_a_top_layer_unit_is_removed(model_and_ids):
    model, ids = model_and_ids
    tied = square_model(model)
    # tie the embedding to the decoder (the shapes fit when embedding and hidden size are equal)
    tied.decoder.weight = tied.encoder.weight
    ablated = ablated_model(tied, LAYERS, (1,))
    assert ablated.decoder.weight.data_ptr() != ablated.encoder.weight.data_ptr()
    assert (ablated.decoder.weight[:, 1] == 0).all() and (ablated.encoder.weight[:, 1] != 0).any()
    assert (tied.decoder.weight[:, 1] != 0).any()


def square_model(model):
    """A model like ``model`` whose embedding is as wide as its hidden state (so it can be tied)."""
    from lstmscope.model import LSTMLanguageModel, ModelConfig

    cfg = model.config
    square = LSTMLanguageModel(ModelConfig(cfg.vocab_size, cfg.hidden_size, cfg.hidden_size, cfg.layers, 0.0))
    return square.eval()


def test_ablations_are_the_top_kl_neurons_and_seeded_random_others(divergence_csv):
    table = pd.read_csv(divergence_csv)
    chosen = choose_ablations(table, LAYERS, HIDDEN, "h", 3, 4, seed=5)
    for layer in range(1, LAYERS + 1):
        live = table[(table.layer == layer) & (table.state == "h") & ~table.dead]
        want = live.sort_values("kl_sum", ascending=False).neuron.head(3).tolist()
        mine = [a for a in chosen if a.layer == layer]
        assert [a.neurons[0] for a in mine if a.group == "top"] == want
        assert [a.kl_rank for a in mine if a.group == "top"] == [1, 2, 3]
        assert [a.neurons for a in mine if a.group == "top all"] == [tuple(want)]
        rand = [a.neurons[0] for a in mine if a.group == "random"]
        assert len(set(rand)) == 4 and not set(rand) & set(want) and all(0 <= j < HIDDEN for j in rand)
        assert not set(rand) & set(table[(table.layer == layer) & table.dead].neuron)
        assert [a.neurons for a in mine if a.group == "random all"] == [tuple(sorted(rand))]
    assert chosen == choose_ablations(table, LAYERS, HIDDEN, "h", 3, 4, seed=5)
    other_seeds = {tuple(a.neurons for a in choose_ablations(table, LAYERS, HIDDEN, "h", 3, 4, seed=s)
                         if a.group == "random") for s in range(6)}
    assert len(other_seeds) > 1
    singles = choose_ablations(table, LAYERS, HIDDEN, "c", 1, 1, seed=5)
    assert [a.group for a in singles] == ["top", "random"] * LAYERS
    # a dead neuron is never a control: with all but the top one and two others dead, the draw takes those two
    top1 = int(table[(table.layer == 1) & (table.state == "h")].sort_values("kl_sum", ascending=False).neuron.iloc[0])
    keep = {top1, (top1 + 1) % HIDDEN, (top1 + 2) % HIDDEN}
    mostly_dead = table.assign(dead=(table.layer == 1) & ~table.neuron.isin(keep))
    mostly_dead.loc[mostly_dead.dead, "rank"] = np.nan
    for seed in range(5):
        drawn = choose_ablations(mostly_dead, LAYERS, HIDDEN, "h", 1, 2, seed=seed)
        assert {a.neurons[0] for a in drawn if a.layer == 1 and a.group == "random"} == keep - {top1}
    with pytest.raises(AblationError, match="layer 1 has only 2 live neurons besides its 1 top ones"):
        choose_ablations(mostly_dead, LAYERS, HIDDEN, "h", 1, 3, seed=0)


def test_word_effects_rank_words_by_their_summed_effect():
    words = ["a", "b", "a", "c", "b", "a", "d"]
    effect = np.array([np.nan, -0.5, 0.3, 2.0, -0.1, 0.6, 5.0])
    helped, hindered = word_effects(words, effect, min_count=2, n=3)
    assert helped == "a (2\u00d7 +0.450 = +0.9)"
    assert hindered == "b (2\u00d7 -0.300 = -0.6)"
    helped, _ = word_effects(words, effect, min_count=1, n=2)
    assert helped == "d (1\u00d7 +5.000 = +5.0); c (1\u00d7 +2.000 = +2.0)"
    # ten tokens helped by 0.5 each outweigh three helped by 1.0 each: the sum ranks, not the mean
    words, effect = ["e"] * 10 + ["f"] * 3, np.array([0.5] * 10 + [1.0] * 3)
    assert word_effects(words, effect, min_count=3, n=2)[0] == "e (10\u00d7 +0.500 = +5.0); f (3\u00d7 +1.000 = +3.0)"
    # a sum below 1 keeps its digits (one decimal wrote "= +0.0" and "= -0.0" for words a neuron barely moved)
    words, effect = ["in"] * 3 + ["of"] * 4, np.array([0.006, 0.007, 0.008, -0.0001, -0.0002, -0.0002, -0.0001])
    assert word_effects(words, effect, min_count=3, n=1) == ("in (3\u00d7 +0.007 = +0.021)",
                                                             "of (4\u00d7 -0.000 = -0.0006)")


def test_the_ablation_job_writes_what_each_ablation_did(tiny, divergence_csv, tmp_path):
    h5, csv = tmp_path / "ablation.h5", tmp_path / "ablation.csv"
    ablations = run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, state="h", neurons=2,
                             random=3, seed=1)  # each unit held at its mean h over the text (ablation.method mean)
    result = write_ablation_table(h5, divergence_csv, csv, min_count=2, top_words=4)
    table = read_ablation_table(csv)
    assert list(table.group) == ["top", "top", "top all", "random", "random", "random", "random all"] * LAYERS
    stored = read_ablation(h5)
    assert stored.attrs["checkpoint_sha256"] == sha256_file(tiny.checkpoint)
    prov = json.loads(stored.attrs["provenance"])
    assert prov["cpu_kernels"] == cpu_kernels()
    # the table that chose the neurons, by content and by what it ranks by
    assert prov["divergence_sha256"] == sha256_file(divergence_csv) and prov["rank_by"] == "kl_sum"
    assert [(a.layer, a.neurons, a.group) for a in stored.ablations] == [
        (r.layer, tuple(int(j) for j in r.neurons.split()), r.group) for r in table.itertuples()]
    with h5py.File(tiny.activations) as f:
        np.testing.assert_allclose(stored.intact[1:], f["log_expectancy"][1:], atol=2e-5)
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:].astype(np.int64)
        means = {layer: f[f"layer{layer}/h"][:].astype(np.float64).mean(axis=0) for layer in range(1, LAYERS + 1)}
    assert stored.attrs["method"] == "mean" and json.loads(stored.attrs["provenance"])["method"] == "mean"
    with h5py.File(h5) as f:
        held_at = f["ablation/held_at"][:]
    for a, ab in enumerate(stored.ablations):
        np.testing.assert_allclose(held_at[a, :len(ab.neurons)], means[ab.layer][list(ab.neurons)], rtol=1e-5)
        assert np.isnan(held_at[a, len(ab.neurons):]).all()
    for a, row in enumerate(table.itertuples()):
        ppl = np.exp(-np.nanmean(stored.ablated[a]))
        assert row.perplexity == pytest.approx(ppl, rel=1e-5)
        assert row.intact_perplexity == pytest.approx(np.exp(-np.nanmean(stored.intact)), rel=1e-5)
        assert row.perplexity_change_pct == pytest.approx(100 * (ppl / row.intact_perplexity - 1), abs=1e-3)
        assert row.mean_effect == pytest.approx(np.log(row.perplexity / row.intact_perplexity), abs=1e-5)
        effect = stored.intact - stored.ablated[a]  # > 0: the word was more probable with the unit in place
        assert row.helped_fraction == pytest.approx(np.mean(effect[1:] > 0), abs=1e-6)
        helped, hindered = word_effects(stored.words, effect, 2, 4)
        assert (row.words_helped, row.words_hindered) == (helped, hindered)
        if a in (0, 3):  # a top and a random unit of layer 1, checked against the step-by-step equations
            held = {(row.layer, j): means[row.layer][j] for j in stored.ablations[a].neurons}
            want = reference_log_probs(model, ids, list(held), held)
            np.testing.assert_allclose(stored.ablated[a][1:], want[1:], atol=1e-4)
    div = pd.read_csv(divergence_csv)
    tops = table[table.group == "top"]
    for r in tops.itertuples():
        d = div[(div.layer == r.layer) & (div.state == "h") & (div.neuron == int(r.neurons))].iloc[0]
        assert r.kl_sum == pytest.approx(d.kl_sum, rel=1e-5) and r.kl_rank == d["rank"]
    for layer in range(1, LAYERS + 1):  # the two live neurons of highest KL sum of h, best first
        live = div[(div.layer == layer) & (div.state == "h") & ~div.dead].sort_values("kl_sum", ascending=False)
        assert [int(n) for n in tops[tops.layer == layer].neurons] == live.neuron.head(2).tolist()
        assert tops[tops.layer == layer].kl_rank.tolist() == [1, 2]
    assert len(result) == len(table) == len(ablations)
    for a, row in enumerate(table.itertuples()):  # the interval: 20 stretches of the text (see the next test)
        assert (row.change_ci_low_pct, row.change_ci_high_pct) == pytest.approx(
            change_interval(stored.intact - stored.ablated[a]), abs=1e-3)
        assert row.change_ci_low_pct <= row.perplexity_change_pct <= row.change_ci_high_pct
    again = tmp_path / "again.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, tmp_path / "again.h5", state="h",
                 neurons=2, random=3, seed=1)
    write_ablation_table(tmp_path / "again.h5", divergence_csv, again, min_count=2, top_words=4)
    assert again.read_bytes() == csv.read_bytes(), "same inputs and seed must give the same table"


def test_zero_ablation_holds_each_unit_at_zero(tiny, divergence_csv, tmp_path):
    h5 = tmp_path / "zero.h5"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=1, random=1, seed=2, max_tokens=120,
                 method="zero")
    stored = read_ablation(h5)
    assert stored.attrs["method"] == "zero"
    model, _ = load_checkpoint(tiny.checkpoint)
    with h5py.File(tiny.activations) as f:
        ids = f["tokens/ids"][:120].astype(np.int64)
    assert {ab.layer for ab in stored.ablations} == set(range(1, LAYERS + 1))
    for a, ab in enumerate(stored.ablations):
        want = reference_log_probs(model, ids, [(ab.layer, j) for j in ab.neurons])
        np.testing.assert_allclose(stored.ablated[a][1:], want[1:], atol=1e-4)
    with h5py.File(h5) as f:
        assert f["ablation/held_at"].size > 0 and (f["ablation/held_at"][:] == 0).all()
    with pytest.raises(AblationError, match="ablation.method='median': choose one of mean, zero"):
        run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, method="median")


def test_the_table_refuses_a_divergence_table_or_file_that_does_not_belong(tiny, divergence_csv, tmp_path):
    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=2, random=1, seed=1, max_tokens=120)
    first = read_ablation(h5).ablations[0]
    assert first.group == "top"
    div = pd.read_csv(divergence_csv)
    other = div.assign(model="d0.5_r0")
    unranked = div.copy()
    removed = (div.layer == first.layer) & (div.state == "h") & (div.neuron == first.neurons[0])
    unranked.loc[removed, "rank"] = np.nan  # dead in that table (a live neuron without a rank: read_divergence's)
    unranked.loc[removed, "dead"] = True
    twice = pd.concat([div, div.iloc[[3]]])
    text = str(div.text.iloc[0])
    for name, table, message, error in [
            ("other", other, r"other\.csv is the divergence table of model d0\.5_r0, not of model "
                             + re.escape(str(div.model.iloc[0])), AblationError),
            ("train", div.assign(text="train"), r"train\.csv is the divergence table of text train, not of text "
                                                 + re.escape(text) + r" \(model .*\): the neurons would be chosen by "
                                                 "another text's ranking$", AblationError),
            ("unranked", unranked, rf"unranked\.csv: layer {first.layer} neuron {first.neurons[0]} was removed as a "
                                   "top-KL neuron of h but is not ranked there", AblationError),
            ("twice", twice, rf"twice\.csv: line {len(div) + 2} repeats layer \d [hc] neuron \d+", HistogramError)]:
        table.to_csv(tmp_path / f"{name}.csv", index=False)
        with pytest.raises(error, match=message):
            write_ablation_table(h5, tmp_path / f"{name}.csv", csv)
    with pytest.raises(AblationError, match=r"ablation.min_count=0, ablation.top_words=6: each must be at least 1"):
        write_ablation_table(h5, divergence_csv, csv, min_count=0)
    stateless = tmp_path / "stateless.h5"
    shutil.copy(h5, stateless)
    with h5py.File(stateless, "a") as f:
        del f.attrs["state"]
    with pytest.raises(AblationError, match=r"stateless\.h5: missing attribute\(s\) state"):
        write_ablation_table(stateless, divergence_csv, csv)
    assert not csv.exists(), "no table after an error"


def test_max_tokens_reads_the_first_tokens_of_the_text(tiny, divergence_csv, tmp_path):
    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=1, random=1, max_tokens=150)
    write_ablation_table(h5, divergence_csv, csv)
    stored = read_ablation(h5)
    assert stored.attrs["n_tokens"] == 150 and stored.ablated.shape == (2 * LAYERS, 150)
    with h5py.File(tiny.activations) as f:
        assert stored.words == [w.decode() for w in f["tokens/words"][:150]]
        np.testing.assert_allclose(stored.intact[1:], f["log_expectancy"][1:150], atol=2e-5)
    table = read_ablation_table(csv)
    # the CSV holds 6 significant digits (float_format %.6g): a relative rounding of up to 5e-6
    assert table.intact_perplexity.iloc[0] == pytest.approx(np.exp(-np.nanmean(stored.intact)), rel=1e-5)
    with pytest.raises(AblationError, match="ablation.max_tokens=1: must be at least 2"):
        run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, max_tokens=1)


def test_removing_a_dead_unit_changes_no_probability(tiny, tmp_path):
    folder = tmp_path / "dead"
    folder.mkdir()
    from lstmscope.activations import TextSpec, dump_activations

    acts = folder / "acts.h5"
    dump_activations(tiny.dead_checkpoint, tiny.vocabulary, tiny.split,
                     TextSpec(name="test", split="test", offset=300, tokens=200), acts, chunk_tokens=64,
                     model_info={"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0})
    model, _ = load_checkpoint(tiny.dead_checkpoint)
    with h5py.File(acts) as f:
        ids = f["tokens/ids"][:].astype(np.int64)
        assert np.abs(f["layer2/h"][:, tiny.dead_neuron]).max() < 1e-9
    intact = text_log_probabilities(model, ids)
    gone = text_log_probabilities(ablated_model(model, 2, (tiny.dead_neuron,)), ids)
    np.testing.assert_allclose(gone[1:], intact[1:], atol=1e-6)
    alive = text_log_probabilities(ablated_model(model, 2, ((tiny.dead_neuron + 1) % HIDDEN,)), ids)
    assert np.abs(alive[1:] - intact[1:]).max() > 1e-3


def test_bad_input_is_named_and_writes_nothing(tiny, divergence_csv, degenerate, tmp_path):
    h5 = tmp_path / "a.h5"

    def run(checkpoint=tiny.checkpoint, activations=tiny.activations, divergence=divergence_csv, **kw):
        args = dict(state="h", neurons=2, random=2, seed=1)
        args.update(kw)
        return run_ablation(checkpoint, activations, divergence, h5, **args)

    with pytest.raises(AblationError, match=r"dead\.pt.*another checkpoint|another checkpoint.*dead\.pt"):
        run(checkpoint=tiny.dead_checkpoint)
    with pytest.raises(AblationError, match=r"missing\.pt: checkpoint not found"):
        run(checkpoint=tmp_path / "missing.pt")
    with pytest.raises(ActivationsError, match="nothing.h5"):
        run(activations=tmp_path / "nothing.h5")
    with pytest.raises(AblationError, match=r"d\.csv: ablation.random=20: layer 1 has only 10"):
        run(random=20)
    with pytest.raises(AblationError, match="^ablation.state='x': choose h or c$"):  # a setting, not the table
        run(state="x")
    with pytest.raises(AblationError, match=r"^ablation.neurons=0, ablation.random=0: at least one neuron to remove$"):
        run(neurons=0, random=0)
    other = pd.read_csv(divergence_csv)
    other["model"] = "d0.5_r0"
    other.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(AblationError, match=r"other\.csv is the divergence table of model d0\.5_r0, not of model "):
        run(divergence=tmp_path / "other.csv")
    # the same model's table of another text: the neurons removed would be that text's top ones
    other = pd.read_csv(divergence_csv).assign(text="train")
    other.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(AblationError, match=r"train\.csv is the divergence table of text train, not of text "):
        run(divergence=tmp_path / "train.csv")
    # the table of a wider model (neurons 0..HIDDEN + 3), whose top neuron of layer 1 h is one the model lacks
    big = pd.read_csv(divergence_csv)
    extra = pd.concat([big[big["neuron"] == 0].assign(neuron=j, rank=pd.NA, dead=True)
                       for j in range(HIDDEN, HIDDEN + 4)])
    big = pd.concat([big, extra], ignore_index=True)
    l1h = (big.layer == 1) & (big.state == "h")
    top = big.index[l1h & (big["rank"] == 1)][0]
    last = big.index[l1h & (big["neuron"] == HIDDEN + 3)][0]
    big.loc[[top, last], "neuron"] = big.loc[[last, top], "neuron"].to_numpy()  # their numbers swapped
    big.to_csv(tmp_path / "big.csv", index=False)
    with pytest.raises(AblationError, match=rf"big\.csv: neurons \[{HIDDEN + 3}\] of layer 1 do not exist"):
        run(divergence=tmp_path / "big.csv")
    # a model whose layer 2 h neurons are all dead: no top-KL neuron of h to remove there
    with pytest.raises(AblationError, match=r"layer 2/h has 0 live \(ranked\) neurons; ablation.neurons=2 asks for more"):
        run(checkpoint=degenerate.checkpoint, activations=degenerate.activations, divergence=degenerate.divergence)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("a.", ".a."))], "no output after an error"
    with pytest.raises(AblationError, match="not a lstmscope ablation file"):
        read_ablation(tiny.activations)


@pytest.fixture(scope="module")
def small_ablation(tiny, divergence_csv, tmp_path_factory):
    """A real ablation file of the shared model (1 top and 1 random neuron per layer, 60 tokens), read-only."""
    h5 = tmp_path_factory.mktemp("small-ablation") / "a.h5"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=1, random=1, seed=3, max_tokens=60)
    return h5


def _replaced(f, key, data):
    """Dataset ``key`` of the open file ``f`` replaced by ``data`` (another shape or dtype)."""
    del f[key]
    f.create_dataset(key, data=data)


def _neuron(f, a, value):
    units = f["ablation/neurons"][:]
    units[a, 0] = value
    f["ablation/neurons"][:] = units


@pytest.mark.parametrize("edit, message", [
    (lambda f: _replaced(f, "ablation/group", f["ablation/group"][:1]),
     r"ablation/group has 1 entries, but log_prob/ablated has 4 rows \(one per ablation\)"),
    (lambda f: _replaced(f, "ablation/layer", f["ablation/layer"][:3]),
     r"ablation/layer has 3 entries, but log_prob/ablated has 4 rows \(one per ablation\)"),
    (lambda f: _replaced(f, "log_prob/ablated", f["log_prob/ablated"][:2]),
     r"ablation/group has 4 entries, but log_prob/ablated has 2 rows \(one per ablation\)"),
    (lambda f: _replaced(f, "log_prob/ablated", f["log_prob/ablated"][:, :50]),
     "log_prob/ablated has 50 columns, but log_prob/intact has 60 tokens"),
    (lambda f: _replaced(f, "log_prob/intact", f["log_prob/intact"][:50]),
     "log_prob/intact has 50 entries, attribute n_tokens says 60"),
    (lambda f: _replaced(f, "tokens/words", f["tokens/words"][:59]),
     "tokens/words has 59 entries, but log_prob/intact has 60 tokens"),
    (lambda f: _replaced(f, "ablation/neurons", f["ablation/neurons"][:, 0]),
     r"dataset 'ablation/neurons' has shape \(4,\), expected 2 dimension\(s\)"),
    (lambda f: _replaced(f, "log_prob/ablated", np.nan_to_num(f["log_prob/ablated"][:]).astype(np.int32)),
     "dataset 'log_prob/ablated' holds int32, expected floats"),
    (lambda f: _neuron(f, 1, HIDDEN), rf"ablation/neurons\[1\] holds neuron {HIDDEN}; the file's neurons are "
                                     rf"0\.\.{HIDDEN - 1} \(-1 pads a row\)"),
    (lambda f: _neuron(f, 0, -7), rf"ablation/neurons\[0\] holds neuron -7; the file's neurons are 0\.\.{HIDDEN - 1} "
                                  r"\(-1 pads a row\)"),
    (lambda f: _neuron(f, 2, -1), r"ablation/neurons\[2\] names no neuron"),
    (lambda f: f["ablation/layer"].__setitem__(0, LAYERS + 1),
     rf"ablation/layer\[0\] is {LAYERS + 1}; the file's layers are 1\.\.{LAYERS}"),
    (lambda f: f.__delitem__("ablation/group"), r"dataset 'ablation/group' is missing \(file incomplete or corrupt\)"),
    (lambda f: f["log_prob/ablated"].__setitem__((2, 30), np.nan),
     r"log_prob/ablated of ablation 2, token 30 is nan, which no log-probability is \(the file is damaged; run the ablation again\)"),
    (lambda f: f["log_prob/intact"].__setitem__(12, 0.7),
     r"log_prob/intact of token 12 is 0.7, which no log-probability is \(the file is damaged; run the ablation again\)"),
    # p = 0: the tables' statistics keep finite values only, so the word would leave the perplexity without a word
    (lambda f: f["log_prob/ablated"].__setitem__((1, 7), -np.inf),
     r"log_prob/ablated of ablation 1, token 7 is -inf, which no log-probability is \(the file is damaged; run the "
     r"ablation again\)"),
], ids=["short-group", "short-layer", "few-rows", "short-columns", "short-intact", "short-words", "1d-neurons",
        "int-log-probs", "neuron-beyond", "negative-neuron", "no-neuron", "layer-beyond", "no-group", "nan-ablated",
        "positive-intact", "minus-inf-ablated"])
def test_a_malformed_ablation_file_is_refused_in_one_line_naming_file_and_key(small_ablation, tmp_path, edit, message):
    stored = read_ablation(small_ablation)  # the file as written: 2 removals in each of the 2 layers, 60 tokens
    assert stored.ablated.shape == (4, 60) and [len(a.neurons) for a in stored.ablations] == [1, 1, 1, 1]
    bad = tmp_path / "bad.h5"
    shutil.copyfile(small_ablation, bad)
    with h5py.File(bad, "a") as f:
        edit(f)
    with pytest.raises(AblationError, match=rf"^{re.escape(str(bad))}: {message}$"):
        read_ablation(bad)


def test_an_activations_file_of_another_text_is_refused(tiny, divergence_csv, tmp_path):
    acts = tmp_path / "acts.h5"
    shutil.copy(tiny.activations, acts)
    with h5py.File(acts, "r+") as f:  # same checkpoint attribute, but the words do not match the stored p
        f["log_expectancy"][5] = f["log_expectancy"][5] - 1.0
    with pytest.raises(AblationError, match=r"acts\.h5: the intact model's log-probabilities differ"):
        run_ablation(tiny.checkpoint, acts, divergence_csv, tmp_path / "a.h5", neurons=1, random=1)


@pytest.mark.workflow
def test_the_tiny_run_ablates_every_model_and_summarises_them(tiny_run):
    res = tiny_run / "pristine" / "results"
    cfg = yaml.safe_load((tiny_run / "pristine" / "tests/config/tiny.yaml").read_text())
    models = [f"d{float(d)!r}_r0" for d in cfg["models"]["dropouts"]]  # ablation.dropouts: null = every model
    k, r = cfg["ablation"]["neurons"], cfg["ablation"]["random"]
    per_layer = ["top"] * k + ["top all"] * (k > 1) + ["random"] * r + ["random all"] * (r > 1)
    frames = []
    for model in models:
        table = read_ablation_table(res / f"ablation/{model}/test.csv")
        assert list(table.group) == per_layer * cfg["architecture"]["layers"]
        div = pd.read_csv(res / f"neurons/{model}/test/divergence.csv")
        for layer in range(1, cfg["architecture"]["layers"] + 1):
            live = div[(div.layer == layer) & (div.state == "h") & ~div.dead].sort_values("kl_sum", ascending=False)
            tops = table[(table.layer == layer) & (table.group == "top")]
            assert [int(n) for n in tops.neurons] == live.neuron.head(k).tolist()
        stored = read_ablation(res / f"ablation/{model}/test.h5")
        with h5py.File(res / f"activations/{model}/test.h5") as f:
            np.testing.assert_allclose(stored.intact[1:], f["log_expectancy"][1:], atol=2e-5)
            assert stored.attrs["checkpoint_sha256"] == f.attrs["checkpoint_sha256"]
        for name in ("effects", "heatmap"):
            for ext in ("png", "svg"):
                assert (res / f"figures/ablation/{model}/test/{name}.{ext}").stat().st_size > 5000
        frames.append(table)
    summary = pd.read_csv(res / "tables/ablation_test.csv")
    assert set(summary.model) == set(models)
    every = pd.concat(frames)
    for row in summary.itertuples():
        rows = every[(every.model == row.model) & (every.layer == row.layer) & (every.group == row.group)]
        assert row.ablations == len(rows)
        assert row.mean_change_pct == pytest.approx(rows.perplexity_change_pct.mean(), rel=1e-4, abs=1e-4)
        assert (row.min_change_pct, row.max_change_pct) == pytest.approx(
            (rows.perplexity_change_pct.min(), rows.perplexity_change_pct.max()), rel=1e-4, abs=1e-4)
    assert (res / "figures/ablation/vs_dropout_test.png").stat().st_size > 5000
    # the rule hands ablation.state (default h) to the figure across models, whose legend names the ranking
    state = cfg["ablation"].get("state", "h")
    assert f"top-KL of {state}, one at a time" in (res / "figures/ablation/vs_dropout_test.svg").read_text()


def test_the_vs_dropout_figure_draws_each_models_spread_of_single_removals(tmp_path, monkeypatch):
    from matplotlib.collections import LineCollection

    from lstmscope import ablation_figures as figs

    rows = []
    for dropout, low, high in ((0.0, -1.0, 2.0), (0.5, 0.5, 0.75)):
        for group, shift in (("top", 0.0), ("random", 10.0), ("top all", 0.0)):
            rows.append({"model": f"d{dropout}_r0", "dropout": dropout, "layer": 1, "group": group, "ablations": 4,
                         "mean_change_pct": (low + high) / 2 + shift, "median_change_pct": 0.0,
                         "min_change_pct": low + shift, "max_change_pct": high + shift, "text": "test"})
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.vs_dropout_figure(pd.DataFrame(rows), tmp_path / "v.png", tmp_path / "v.svg", "t")
    (ax,) = kept[0].axes
    segments = sorted((round(float(s[0][0]), 6), float(s[0][1]), float(s[1][1]))
                      for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments())
    d = round(figs.SPREAD_SHIFT * 0.5, 6)  # a fraction of the gap between the dropouts, 0.5
    assert 0 < d < 0.25
    assert segments == [(-d, -1.0, 2.0), (d, 9.0, 12.0), (0.5 - d, 0.5, 0.75), (0.5 + d, 10.5, 10.75)]
    # clear of the point's marker at the default dropouts: the line (1.2 points wide) outside the marker (its size's
    # root across, in points; at SPREAD_SHIFT 0.12 the markers hid the top-KL group's short lines)
    nine = pd.DataFrame([{**row, "dropout": d / 10, "model": f"d{d / 10}_r0"} for d in range(9) for row in rows[:3]])
    figs.vs_dropout_figure(nine, tmp_path / "v.png", tmp_path / "v.svg", "t")
    ax = kept[-1].axes[0]
    marker = max(float(np.sqrt(c.get_sizes()[0])) for c in ax.collections if not isinstance(c, LineCollection))
    points_per_unit = ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0]
    points_per_unit *= 72 / kept[-1].dpi
    assert figs.SPREAD_SHIFT * 0.1 * points_per_unit >= marker / 2 + 1.2, (figs.SPREAD_SHIFT * 0.1 * points_per_unit,
                                                                           marker)


@pytest.mark.parametrize("dropouts", [(0.3,), (0.0, 0.01), (0.0, 0.01, 0.5), (0.1, 0.2, 0.3)])
def test_each_spread_line_stays_beside_its_own_dropout(tmp_path, monkeypatch, dropouts):
    """Close dropouts (or a single one): every model's spread line is nearer its own dropout than any other, on the
    correct side of it, and inside the axes."""
    from matplotlib.collections import LineCollection

    from lstmscope import ablation_figures as figs

    rows = [{"model": f"d{d}_r0", "dropout": d, "layer": 1, "group": group, "ablations": 4,
             "mean_change_pct": 0.0, "median_change_pct": 0.0, "min_change_pct": -1.0, "max_change_pct": 1.0,
             "text": "test"} for d in dropouts for group in ("top", "random", "random all")]
    rows[-1]["mean_change_pct"] = 2.0  # the last dropout's high point, top right
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.vs_dropout_figure(pd.DataFrame(rows), tmp_path / "v.png", tmp_path / "v.svg", "t")
    (ax,) = kept[0].axes
    lo, hi = ax.get_xlim()
    spreads = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(spreads) == 2, spreads
    for c, side in zip(spreads, (-1, 1)):  # top, then random
        xs = [float(seg[0][0]) for seg in c.get_segments()]
        assert len(xs) == len(dropouts)
        for x, own in zip(xs, dropouts):
            nearest = min(dropouts, key=lambda d: abs(d - x))
            assert nearest == own and (x - own) * side > 0 and lo < x < hi, (dropouts, x, own, (lo, hi))
            assert abs(x - own) < (hi - lo) / 4, "a spread line as far from its point as the axes' edge"


def test_the_vs_dropout_legend_covers_no_point(tmp_path, monkeypatch):
    """Points all over the panel (nine dropouts, the groups at four heights in turn): the legend is beside it."""
    from lstmscope import ablation_figures as figs

    dropouts = [round(0.1 * k, 1) for k in range(9)]
    rows = [{"model": f"d{d}_r0", "dropout": d, "layer": 1, "group": group, "ablations": 4,
             "mean_change_pct": (-0.5, 0.3, 1.1, 2.0)[(k + g) % 4], "median_change_pct": 0.0, "min_change_pct": -0.6,
             "max_change_pct": 2.1, "text": "test"}
            for k, d in enumerate(dropouts) for g, group in enumerate(figs.ORDER)]
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.vs_dropout_figure(pd.DataFrame(rows), tmp_path / "v.png", tmp_path / "v.svg", "t")
    (ax,) = kept[0].axes
    kept[0].canvas.draw()
    legend = ax.get_legend().get_window_extent()
    points = np.vstack([ax.transData.transform(c.get_offsets()) for c in ax.collections
                        if isinstance(c, figs.plt.matplotlib.collections.PathCollection)])
    assert len(points) == 4 * len(dropouts)
    assert not any(legend.contains(x, y) for x, y in points), "the legend covers a point"
    # the legend says what each line is as drawn: solid one at a time, dashed all together, and the thin spread lines
    entries = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles)}
    drawn = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()]
    for group in figs.ORDER:
        name, colour, marker = figs.GROUP_STYLE[group]
        label = next(text for text in entries if text.startswith(name.replace("\n", ", ")))
        together = group.endswith("all")
        assert entries[label].get_linestyle() == ("--" if together else "-") and entries[label].get_marker() == marker
        assert (colour, entries[label].get_linestyle()) in drawn  # a line of the panel drawn so
    spread = [text for text in entries if "lowest to highest single removal" in text]
    assert len(spread) == 1 and entries[spread[0]].get_marker() == "|" and list(entries)[-1] == spread[0]


def test_figures_of_random_neurons_only(tiny, divergence_csv, tmp_path, monkeypatch):
    """With ablation.neurons 0 only the control is removed; the heatmap then shows the random neuron whose removal
    changed the perplexity most (up or down)."""
    from lstmscope import ablation_figures as figs

    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=0, random=2, seed=3)
    write_ablation_table(h5, divergence_csv, csv)
    table = read_ablation_table(csv)
    assert set(table.group) == {"random", "random all"}
    titles, drawn, suptitles = [], [], []
    real = figs.draw_blocks  # still draws; the blocks are kept to check which neuron was chosen, and the scale
    monkeypatch.setattr(figs, "draw_blocks",
                        lambda blocks, *a, **k: (titles.extend(b.title for b in blocks), drawn.extend(blocks),
                                                 suptitles.append(k["suptitle"]), real(blocks, *a, **k)))
    figs.ablation_figures(h5, csv, *(tmp_path / f"{n}.{e}" for n in ("effects", "heatmap") for e in ("png", "svg")),
                          passage_tokens=40)
    for layer in range(1, LAYERS + 1):
        rows = table[(table.layer == layer) & (table.group == "random")]
        worst = rows.loc[rows.perplexity_change_pct.abs().idxmax()]
        change = f"{worst.perplexity_change_pct:+.2f}".replace("-", "\u2212")  # signed, a true minus sign
        head = f"layer {layer}, neuron {worst.neurons} (random): perplexity {change} % without it, tokens "
        assert any(t.startswith(head) for t in titles), titles
    assert all((tmp_path / f"{n}.png").stat().st_size > 5000 for n in ("effects", "heatmap"))
    assert suptitles[0].endswith("\nneurons removed: h held at its mean over the words read")  # the file's method
    # one colour scale for all layers, centred on 0 and reaching the largest |effect| drawn in any of them
    largest = max(np.nanmax(np.abs(b.values)) for b in drawn)
    assert len(drawn) == LAYERS and len({(b.norm.vmin, b.norm.vmax) for b in drawn}) == 1
    assert drawn[0].norm.vmax == pytest.approx(largest) and drawn[0].norm.vmin == pytest.approx(-largest)
    assert min(np.nanmax(np.abs(b.values)) for b in drawn) < largest  # the layers' own ranges differ


def test_the_top_groups_name_the_state_whose_kl_ranked_them(tiny, divergence_csv, tmp_path, monkeypatch):
    """ablation.state c takes the top neurons from the ranking of c: the effects figure's groups say so (read from
    the ablation file), as the heatmap's titles do, and the figure across models names it in its legend."""
    from lstmscope import ablation_figures as figs

    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, state="c", neurons=2, random=2, seed=3,
                 max_tokens=120)
    write_ablation_table(h5, divergence_csv, csv)
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.ablation_figures(h5, csv, *(tmp_path / f"{n}.{e}" for n in ("effects", "heatmap") for e in ("png", "svg")),
                          passage_tokens=40)
    ticks = [t.get_text() for t in kept[0].axes[0].get_xticklabels()]
    assert ticks == ["top-KL of c\none at a time", "random\none at a time", "top-KL of c\nall together",
                     "random\nall together"], ticks
    kept.clear()
    figs.ablation_vs_dropout([csv], tmp_path / "v.csv", tmp_path / "v.png", tmp_path / "v.svg", state="c")
    (legend,) = [ax.get_legend() for ax in kept[0].axes if ax.get_legend()]  # (beside the first row's last panel)
    legend = [t.get_text() for t in legend.get_texts()]
    assert legend[:4] == ["top-KL of c, one at a time (mean)", "random, one at a time (mean)",
                          "top-KL of c, all together", "random, all together"], legend
    figs.plt.close("all")


def test_change_interval_by_hand():
    # four stretches of ten words whose effects are 0, 0.1, 0.2, 0.3 nats: mean 0.15, standard error
    # sd(0, .1, .2, .3) / 2 = 0.0645497; t(3) at 97.5 % = 3.182446 (a table value)
    effect = np.concatenate([[np.nan], np.repeat([0.0, 0.1, 0.2, 0.3], 10)])
    half = 3.182446 * 0.0645497
    low, high = change_interval(effect, blocks=4)
    assert low == pytest.approx(100 * np.expm1(0.15 - half), rel=1e-5)
    assert high == pytest.approx(100 * np.expm1(0.15 + half), rel=1e-5)
    assert change_interval(np.zeros(40), blocks=4) == (0.0, 0.0)  # a removal that changes nothing
    assert all(np.isnan(change_interval(np.zeros(7), blocks=4)))  # fewer than two words per stretch


@pytest.fixture(scope="module")
def effects_table(tiny, divergence_csv, tmp_path_factory):
    """A real ablation table of the shared model (2 top and 2 random neurons per layer, 120 tokens), read-only."""
    folder = tmp_path_factory.mktemp("effects-table")
    h5, csv = folder / "a.h5", folder / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=2, random=2, seed=3, max_tokens=120)
    return write_ablation_table(h5, divergence_csv, csv)


def drawn_effects_figure(table, tmp_path, monkeypatch, state=None):
    """The effects figure of ``table`` (its top groups named for ``state``), laid out (not saved), and its renderer."""
    from lstmscope import ablation_figures as figs

    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.effects_figure(table, tmp_path / "e.png", tmp_path / "e.svg", state=state)
    (fig,) = kept
    fig.canvas.draw()
    return fig, fig.canvas.get_renderer()


@pytest.mark.parametrize("changes", [
    [0.01, -0.02, 0.0, 0.03],  # about level, as in the default models
    [0.0, 0.05, 0.0, 0.05],  # zig-zag
    [0.0, 0.05, 0.0, 0.05, 0.1, 0.02, -0.03, 0.0, 0.04, 0.01],  # ten top neurons: the six largest labelled
])
def test_effects_figure_labels_overlap_neither_each_other_nor_the_points(effects_table, tmp_path, monkeypatch, changes):
    """Top neurons whose removal changes almost nothing lie side by side near 0 %, as in the default models: their
    index labels (of four digits, as at the thesis's width) must stay readable and inside the panel."""
    from lstmscope import ablation_figures as figs

    real = effects_table
    rows = []
    for layer in range(1, LAYERS + 1):  # the real table's rows, its top rows replaced by len(changes) of them
        sub = real[real.layer == layer]
        top = sub[sub.group == "top"].iloc[[0] * len(changes)].assign(
            perplexity_change_pct=changes, neurons=[str(1000 + 111 * k) for k in range(len(changes))])
        rows += [top, sub[sub.group != "top"]]
    table = pd.concat(rows, ignore_index=True)
    fig, renderer = drawn_effects_figure(table, tmp_path, monkeypatch)
    for ax, layer in zip(fig.axes, range(1, LAYERS + 1)):
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        shown = {int(t.get_text()) for t in ax.texts}  # labels of the most changed neurons only
        top = {j for j in shown if j >= 1000}
        assert top <= {1000 + 111 * k for k in np.argsort(-np.abs(changes), kind="stable")[:figs.LABELLED]}
        assert len(top) >= min(len(changes), 4)  # room for most of them
        random = table[(table.layer == layer) & (table.group == "random")]
        most = random.iloc[np.argsort(-random.perplexity_change_pct.abs().to_numpy(), kind="stable")]
        assert shown - top <= {int(j) for j in most.neurons.head(figs.LABELLED_RANDOM)}  # then the random ones
        points = np.vstack([ax.transData.transform(c.get_offsets()) for c in ax.collections
                            if isinstance(c, figs.plt.matplotlib.collections.PathCollection)])
        frame = ax.get_window_extent(renderer)
        lines = [ax.transData.transform(seg) for c in ax.collections
                 if isinstance(c, figs.plt.matplotlib.collections.LineCollection) for seg in c.get_segments()]
        assert lines, "each change's interval is drawn as a line"
        for i, box in enumerate(boxes):
            assert not any(box.overlaps(other) for other in boxes[i + 1:]), "two labels overlap"
            assert not any(box.contains(px, py) for px, py in points), "a label covers a point"
            assert frame.y0 <= box.y0 and box.y1 <= frame.y1, "a label outside the panel"
            assert not any(box.x0 < seg[0][0] < box.x1 and min(seg[:, 1]) < box.y1 and box.y0 < max(seg[:, 1])
                           for seg in lines), "a label crosses an interval line"
    figs.plt.close(fig)


def test_effects_figure_labels_every_single_removal_beside_its_own_point(effects_table, tmp_path, monkeypatch):
    """Four top and four random neurons whose removals change the perplexity alike (as in the default run's d0.8_r0):
    every one is labelled, and each label sits nearer its own point than any other, so none can be read as a
    neighbour's (the random ones were once set out so close that a label fell between two of them)."""
    from lstmscope import ablation_figures as figs
    from lstmscope.ablation_table import INTERVAL

    changes = {"top": [0.08, 0.03, 0.12, 0.07], "random": [0.13, 0.10, 0.14, 0.06]}
    rows = []
    for layer in range(1, LAYERS + 1):
        sub = effects_table[effects_table.layer == layer]
        for group, values in changes.items():
            first = 1000 if group == "top" else 2000
            rows.append(sub[sub.group == group].iloc[[0] * 4].assign(
                perplexity_change_pct=values, neurons=[str(first + 111 * k) for k in range(4)],
                **{INTERVAL[0]: np.subtract(values, 0.05), INTERVAL[1]: np.add(values, 0.06)}))
        rows.append(sub[~sub.group.isin(list(changes))])
    fig, renderer = drawn_effects_figure(pd.concat(rows, ignore_index=True), tmp_path, monkeypatch)
    for ax in fig.axes:
        shown = {t.get_text(): t for t in ax.texts}
        assert sorted(shown) == sorted(str(f + 111 * k) for f in (1000, 2000) for k in range(4))
        singles = [c for c in ax.collections if isinstance(c, figs.plt.matplotlib.collections.PathCollection)]
        points = {}  # neuron label -> its point in pixels, from the order the points are drawn in
        for c in singles:
            for x, y in c.get_offsets():
                for group, values in changes.items():
                    if 0 <= round(x) == ("top", "random").index(group) and np.isclose(y, values).any():
                        k = int(np.flatnonzero(np.isclose(y, values))[0])
                        points[str((1000 if group == "top" else 2000) + 111 * k)] = ax.transData.transform((x, y))
        assert len(points) == 8
        for name, text in shown.items():
            box = text.get_window_extent(renderer)
            centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
            nearest = min(points, key=lambda n: abs(points[n][0] - centre[0]))
            assert nearest == name, f"label {name} sits nearer the point of {nearest}"
    figs.plt.close(fig)


@pytest.mark.parametrize("layers", [[1], [1, 2]])
def test_effects_figure_group_names_do_not_run_together(effects_table, tmp_path, monkeypatch, layers):
    """The four groups' names under each panel stay apart, with one panel (a one-layer model) as with two (the top
    groups' names as long as they get: naming the state)."""
    from lstmscope import ablation_figures as figs

    fig, renderer = drawn_effects_figure(effects_table[effects_table.layer.isin(layers)], tmp_path, monkeypatch, "h")
    assert len(fig.axes) == len(layers)
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) == 4, [t.get_text() for t in ticks]
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(round(b.x0), round(b.x1)) for b in boxes]
    # the title is wrapped within the figure (a wider one made the saved figure wider than its panels)
    title = fig._suptitle.get_window_extent(renderer)
    assert 0 <= title.x0 and title.x1 <= fig.bbox.width, (title, fig.bbox.width)
    figs.plt.close(fig)


def panel_rows(fig):
    """The figure's panels as rows, top first, each left to right."""
    rows = {}
    for ax in fig.axes:
        box = ax.get_position()
        rows.setdefault(round(box.y0, 3), []).append(ax)
    return [sorted(r, key=lambda a: a.get_position().x0) for _, r in sorted(rows.items(), reverse=True)]


@pytest.mark.parametrize("layers", [2, 5, 8])
def test_many_layers_wrap_into_rows_of_at_most_four_panels(effects_table, tmp_path, monkeypatch, layers):
    """A deep model's ablation figures are rows of at most four layers (8 used to make one row 5 000 px wide), in
    order, each row's first panel labelled, the vs-dropout legend beside the first row and over no panel."""
    from lstmscope import ablation_figures as figs

    table = pd.concat([effects_table[effects_table.layer == 1 + k % LAYERS].assign(layer=k + 1)
                       for k in range(layers)], ignore_index=True)
    fig, _ = drawn_effects_figure(table, tmp_path, monkeypatch)
    summary = pd.concat([table.assign(model=f"d{d}_r0", dropout=d) for d in (0.0, 0.5)]).groupby(
        ["model", "dropout", "layer", "group"], as_index=False).agg(
        mean_change_pct=("perplexity_change_pct", "mean"), min_change_pct=("perplexity_change_pct", "min"),
        max_change_pct=("perplexity_change_pct", "max"))
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda f, *a, **k: kept.append(f))
    figs.vs_dropout_figure(summary, tmp_path / "v.png", tmp_path / "v.svg", "t")
    for f in (fig, kept[0]):
        f.canvas.draw()
        rows = panel_rows(f)
        assert [len(r) for r in rows] == [4] * (layers // 4) + [layers % 4] * (layers % 4 > 0)
        assert [ax.get_title() for r in rows for ax in r] == [f"layer {k}" for k in range(1, layers + 1)]
        assert all(bool(ax.get_ylabel()) == (ax is r[0]) for r in rows for ax in r)
        assert f.get_size_inches()[0] < 4.6 * 4 + 2
    legend = next(ax.get_legend() for ax in kept[0].axes if ax.get_legend())
    box = legend.get_window_extent()
    first = panel_rows(kept[0])[0]
    assert box.x0 > first[-1].get_window_extent().x1 and box.y0 > first[-1].get_window_extent().y0
    assert not any(box.overlaps(ax.get_window_extent()) for ax in kept[0].axes)
    figs.plt.close(fig)
    figs.plt.close(kept[0])


def test_ablation_heatmap_passage_is_chosen_outside_the_headings_unless_active(tiny, divergence_csv, tmp_path,
                                                                                monkeypatch):
    from lstmscope import ablation_figures as figs

    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=2, random=1, seed=3, max_tokens=200)
    table = write_ablation_table(h5, divergence_csv, csv)
    stored = read_ablation(h5)
    drawn = []
    monkeypatch.setattr(figs, "draw_blocks", lambda blocks, *a, **k: drawn.append(blocks))
    starts = {}
    for passage in ("prose", "active"):
        figs.heatmap_figure(h5, table, tmp_path / "h.png", tmp_path / "h.svg", passage_tokens=60, passage=passage)
        blocks = drawn.pop()
        assert len(blocks) == table["layer"].nunique(), [b.title for b in blocks]  # one neuron per layer
        for block in blocks:
            layer, neuron = (int(x) for x in re.search(r"layer (\d+), neuron (\d+)", block.title).groups())
            a = next(i for i, ab in enumerate(stored.ablations) if (ab.layer, ab.neurons) == (layer, (neuron,)))
            effect = stored.effect(a)
            want = (prose_window(effect, stored.words, 60) if passage == "prose"
                    else int(np.argmax(np.convolve(np.abs(np.nan_to_num(effect)), np.ones(60), "valid"))))
            assert f"tokens {want}-{want + 59}" in block.title, (passage, block.title)
            starts[passage, a] = want
    # 60 of these 200 tokens: a passage of a heading is where both neurons' removals matter most
    assert all(s != starts["active", a] for (p, a), s in starts.items() if p == "prose"), starts
    with pytest.raises(ValueError, match="heatmap.passage='all'"):
        figs.ablation_figures(h5, csv, *(tmp_path / f"x.{e}" for e in ("png", "svg", "png", "svg")), passage_tokens=30,
                              passage="all")


@pytest.mark.parametrize("state", ["c", "h"])
def test_ablation_heatmap_titles_name_the_state_the_kl_rank_is_of(tiny, divergence_csv, tmp_path, monkeypatch, state):
    """"KL rank 2" alone did not say of which state; the neuron heatmaps say "KL rank 1 of c": the ablation's
    ranks are those of the state it ranked by (its file's ``state``, ablation.state)."""
    from lstmscope import ablation_figures as figs

    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, state=state, neurons=2, random=1, seed=3,
                 max_tokens=60)
    assert read_ablation(h5).attrs["state"] == state
    table = write_ablation_table(h5, divergence_csv, csv)
    drawn = []
    monkeypatch.setattr(figs, "draw_blocks", lambda blocks, *a, **k: drawn.append(blocks))
    figs.heatmap_figure(h5, table, tmp_path / "h.png", tmp_path / "h.svg", passage_tokens=20)
    titles = [block.title for block in drawn[0]]
    assert titles and all(re.search(rf"\(KL rank \d+ of {state}\): perplexity", t) for t in titles), titles


def test_points_whose_interval_includes_zero_are_hollow(tiny, divergence_csv, tmp_path, monkeypatch):
    from lstmscope import ablation_figures as figs

    rows = pd.DataFrame({"change_ci_low_pct": [-1.0, 0.5, -2.0, np.nan, 0.0],
                         "change_ci_high_pct": [1.0, 1.0, -1.0, np.nan, 2.0]})
    assert figs.clear_of_zero(rows).tolist() == [False, True, True, False, False]  # no interval: not clear
    assert not figs.clear_of_zero(rows.drop(columns="change_ci_low_pct")).any()  # an older table: no claim
    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=2, random=2, seed=3, max_tokens=200)
    table = write_ablation_table(h5, divergence_csv, csv)
    table.loc[0, ["change_ci_low_pct", "change_ci_high_pct"]] = [-5.0, 5.0]  # one surely hollow
    kept = []
    monkeypatch.setattr(figs, "save_figure", lambda fig, *a, **k: kept.append(fig))
    figs.effects_figure(table, tmp_path / "e.png", tmp_path / "e.svg")
    (fig,) = kept
    from matplotlib.collections import LineCollection, PathCollection

    for ax, layer in zip(fig.axes, range(1, LAYERS + 1)):
        sub = table[table.layer == layer]
        markers = [c for c in ax.collections if isinstance(c, PathCollection)]
        hollow = [c for c in markers if len(c.get_offsets()) and np.allclose(c.get_facecolor()[:, :3], 1)]
        values = sorted(float(y) for c in hollow for _, y in c.get_offsets())
        want = sub.loc[~figs.clear_of_zero(sub), "perplexity_change_pct"]
        assert values == pytest.approx(sorted(want)) and (layer != 1 or len(values) >= 1)
        # a line through each point from the low to the high end of its interval
        lines = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
        spans = np.array(sorted((float(seg[0][1]), float(seg[1][1])) for seg in lines))
        np.testing.assert_allclose(spans, np.array(sorted(zip(sub.change_ci_low_pct, sub.change_ci_high_pct))),
                                   rtol=1e-6)
        xs = {round(float(x), 9) for c in markers for x, _ in c.get_offsets()}
        assert {round(float(seg[0][0]), 9) for seg in lines} <= xs and all(seg[0][0] == seg[1][0] for seg in lines)
    figs.plt.close(fig)


def test_the_figures_refuse_a_table_not_made_from_their_file_and_a_damaged_table_in_one_line(tiny, divergence_csv,
                                                                                            tmp_path):
    """The figures draw a row's numbers beside the file's effects of the same position: another model's or text's
    table, or one whose rows are other ablations, drew one model's effects under another's neurons. A damaged value
    stopped the figures and the table across models with pandas' or Python's own error, naming no file."""
    from lstmscope import ablation_figures as figs
    from lstmscope.ablation_figures import ablation_summary

    h5, csv = tmp_path / "a.h5", tmp_path / "a.csv"
    run_ablation(tiny.checkpoint, tiny.activations, divergence_csv, h5, neurons=2, random=1, seed=3, max_tokens=120)
    good = write_ablation_table(h5, divergence_csv, csv)
    model = str(good.model.iloc[0])
    shuffled = good.iloc[[1, 0, *range(2, len(good))]]
    first, second = good.iloc[0], good.iloc[1]
    cases = [
        ("other", good.assign(model="d0.5_r0"),
         rf"other\.csv is the ablation table of model d0\.5_r0 / text test, but .*a\.h5 is of model "
         rf"{re.escape(model)} / text test$"),
        ("train", good.assign(text="train"), r"train\.csv is the ablation table of model .* / text train, but "),
        ("short", good.iloc[:-1], rf"a\.h5 holds {len(good)} ablations but .*short\.csv has {len(good) - 1} rows$"),
        ("shuffled", shuffled,
         rf"shuffled\.csv: line 2 is layer {second.layer} top neurons {second.neurons}, but ablation 1 of .*a\.h5 is "
         rf"layer {first.layer} top neurons {first.neurons}: not the table of this file$"),
    ]
    damaged = good.astype(object)
    damaged.loc[2, "perplexity_change_pct"] = "n/a"
    cases.append(("damaged", damaged, r"damaged\.csv: column perplexity_change_pct must hold numbers; line 4 has "
                                      r"'n/a'$"))
    blank = good.astype(object)
    blank.loc[2, "perplexity_change_pct"] = ""  # pandas would leave it out of the min and max across models
    cases.append(("blank", blank, r"blank\.csv: column perplexity_change_pct must hold numbers; line 4 has no value "
                                  r"\(an empty cell or nan\)$"))
    infinite = good.astype(object)
    infinite.loc[2, "perplexity_change_pct"] = float("inf")  # a mean across models would be inf too
    cases.append(("infinite", infinite, r"infinite\.csv: column perplexity_change_pct must hold finite numbers; "
                                        r"line 4 has inf$"))
    layer = good.astype(object)
    layer.loc[0, "layer"] = "one"
    cases.append(("layer", layer, r"layer\.csv: column layer must hold whole numbers from 1; line 2 has 'one'$"))
    group = good.assign(group=good.group.replace({"random": "randm"}))
    cases.append(("group", group, r"group\.csv: column group must hold top or top all or random or random all; "
                                  r"line \d+ has 'randm'$"))
    for name, table, message in cases:
        path = tmp_path / f"{name}.csv"
        table.to_csv(path, index=False)
        outputs = [tmp_path / f"{name}-{n}.{e}" for n in ("effects", "heatmap") for e in ("png", "svg")]
        with pytest.raises(AblationError, match=message):
            figs.ablation_figures(h5, path, *outputs, passage_tokens=30)
        assert not any(p.exists() for p in outputs)
    for name in ("damaged", "blank", "infinite", "layer", "group"):
        with pytest.raises(AblationError, match=rf"{name}\.csv: column "):
            ablation_summary([csv, tmp_path / f"{name}.csv"])

"""The neuron stages through Snakemake on the tiny config: every output, its contents, its errors.

Uses the session's complete tiny run (``tiny_run`` in conftest.py) and, for the error case, a
restored copy of it (``tiny_workdir``).
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY, edit_yaml, snakemake
from lstmscope.tracking import start_up

pytestmark = pytest.mark.workflow


def _tiny_config(work):
    cfg = yaml.safe_load((work / "tests/config/tiny.yaml").read_text())
    models = [f"d{float(d)!r}_r0" for d in cfg["models"]["dropouts"]]
    return cfg, models, list(cfg["texts"])


def test_every_neuron_output_of_the_tiny_run(tiny_run):
    work = tiny_run / "pristine"
    cfg, models, texts = _tiny_config(work)
    layers, hidden = cfg["architecture"]["layers"], cfg["architecture"]["hidden_size"]
    res = work / "results"
    for model in models:
        for text in texts:
            with h5py.File(res / f"activations/{model}/{text}.h5") as f:
                assert f.attrs["n_tokens"] == cfg["texts"][text]["tokens"] and f.attrs["model"] == model
                assert f["layer2/c"].shape == (cfg["texts"][text]["tokens"], hidden)
                assert f["layer2/c"].chunks[0] == cfg["activations"]["chunk_tokens"]
                prov = json.loads(f.attrs["provenance"])
                assert prov["text"] == text and prov["split"] == cfg["texts"][text]["split"]
            div = pd.read_csv(res / f"neurons/{model}/{text}/divergence.csv")
            assert len(div) == layers * 2 * hidden and set(div.model) == {model}
            assert (div.kl_sum >= 0).all() and div["rank"].notna().sum() == (~div.dead).sum()
            track = pd.read_csv(res / f"neurons/{model}/{text}/tracking.csv")
            for (layer, state), live in div[~div.dead].groupby(["layer", "state"]).size().items():
                ranks = sorted(track[(track.layer == layer) & (track.state == state)]["rank"])
                assert ranks == list(range(1, min(5, live) + 1)), (model, text, layer, state)  # divergence.track
            assert len(track) == len(track.drop_duplicates(["layer", "state", "neuron"]))
            probes = pd.read_csv(res / f"neurons/{model}/{text}/probes.csv")
            assert len(probes) == layers * 2 * 5 and set(probes.model) == {model}
            # probe.test_share: a quarter of the text tests (a short text keeps its start-up tokens)
            n = cfg["texts"][text]["tokens"]
            skip = start_up(n)  # the probes' start-up tokens (none in a short text)
            assert (probes.test_tokens == round(0.25 * (n - skip))).all()
            assert (probes.train_tokens + probes.test_tokens == n - skip).all()
            gates = pd.read_csv(res / f"neurons/{model}/{text}/gates.csv")
            assert len(gates) == layers * hidden and set(gates.model) == {model} and set(gates.text) == {text}
            assert set(gates.saturation) == {0.1} and (gates.forget_timescale > 0).all()  # gates.saturation's default
            log = (res / f"logs/gate_statistics/{model}/{text}.log").read_text()
            assert log.count("the gates give the file's c and h to") == layers
            assert (res / f"figures/neurons/{model}/{text}/gate_saturation.png").stat().st_size > 5000
            for name in ("distributions", "top_bottom", "dead_neuron"):
                for ext in ("png", "svg"):
                    assert (res / f"figures/neurons/{model}/{text}/{name}.{ext}").stat().st_size > 5000
            for layer in range(1, layers + 1):
                for state in ("h", "c"):
                    assert (res / f"figures/neurons/{model}/{text}/heatmap_layer{layer}_{state}.png").is_file()
            assert (res / f"figures/expectancy/{model}/{text}.svg").is_file()
            assert (res / f"logs/dump_activations/{model}/{text}.log").read_text().count("finished in") == 1
            assert (res / f"benchmarks/neuron_histograms/{model}/{text}.tsv").is_file()
    ranges = pd.read_csv(res / "tables/histogram_range.csv")
    assert len(ranges) == len(models) * len(texts) * layers * 2
    assert (ranges[ranges.state == "h"][["underflow", "overflow"]] == 0).all().all()
    summary = pd.read_csv(res / "tables/neuron_tracking.csv")
    assert set(summary.model) == set(models) and (summary["rank"] == 1).all()
    for text in texts:
        table = pd.read_csv(res / f"tables/mean_abs_vs_dropout_{text}.csv")
        assert sorted(table.dropout.unique()) == sorted(cfg["models"]["dropouts"])
        assert (res / f"figures/neurons/mean_abs_vs_dropout_{text}.png").is_file()
        probes = pd.read_csv(res / f"tables/context_probes_{text}.csv")
        assert sorted(probes.dropout.unique()) == sorted(cfg["models"]["dropouts"]) and set(probes.text) == {text}
        for ext in ("png", "svg"):
            assert (res / f"figures/neurons/context_probes_{text}.{ext}").stat().st_size > 5000
        gates = pd.read_csv(res / f"tables/gates_{text}.csv")
        assert sorted(gates.dropout.unique()) == sorted(cfg["models"]["dropouts"]) and set(gates.text) == {text}
        assert len(gates) == len(models) * layers * 4
        assert (res / f"figures/neurons/gates_{text}.svg").stat().st_size > 5000
        # every two models' CKA on the text, each layer and state: 1 with itself, the same both ways
        alike = pd.read_csv(res / f"tables/similarity_{text}.csv")
        assert len(alike) == len(models) ** 2 * layers * 2 and set(alike.text) == {text}
        assert list(dict.fromkeys(alike.model_a)) == models  # by dropout
        same = alike[alike.model_a == alike.model_b]
        assert np.allclose(same.cka, 1.0) and alike.cka.between(0, 1 + 1e-9).all()
        both_ways = alike.set_index(["layer", "state", "model_a", "model_b"]).cka
        assert np.allclose(both_ways.to_numpy(), both_ways.swaplevel(2, 3).loc[both_ways.index].to_numpy())
        assert list(json.loads((res / f"tables/similarity_{text}.csv.provenance.json").read_text())["models"]) == models
        assert (res / f"figures/neurons/similarity_{text}.png").stat().st_size > 5000
        # every neuron of every model matched in every other model, beside the CKA table, and the figure of them
        matches = pd.read_csv(res / f"neuron_matches/{text}.csv")
        assert len(matches) == len(models) * (len(models) - 1) * layers * 2 * cfg["architecture"]["hidden_size"]
        assert (matches.model != matches.other_model).all() and matches.r.abs().max() <= 1
        paired = matches.dropna(subset=["partner"])  # one to one: each neuron of the other model paired once
        assert len(paired) > 0.9 * len(matches) and paired.r_partner.abs().max() <= 1
        assert not paired.duplicated(["layer", "state", "model", "other_model", "partner"]).any()
        assert list(json.loads((res / f"neuron_matches/{text}.csv.provenance.json").read_text())["models"]) == models
        assert (res / f"figures/neurons/neuron_matches_{text}.png").stat().st_size > 5000
    # context use: every model on the texts of context_use.texts (tiny.yaml: lengths 1-50, 200 words predicted)
    use = cfg["context_use"]
    for text in use.get("texts", ["test"]):
        for model in models:
            table = pd.read_csv(res / f"context_use/{model}/{text}.csv")
            whole = table[table.words == "all"]
            assert whole[["variant", "length"]].values.tolist() == [
                *(["truncated", k] for k in use["lengths"]), *(["shuffled", k] for k in use["lengths"][:-1])]
            assert set(table.longest) == {max(use["lengths"])} and set(whole.positions) == {use["positions"]}
            record = json.loads((res / f"context_use/{model}/{text}.csv.provenance.json").read_text())
            assert record["device"] == "cpu" and record["cpu_kernels"] and record["settings"]["positions"] == 200
            assert list(record["models"]) == [model]
        summary = pd.read_csv(res / f"tables/context_use_{text}.csv")
        assert sorted(summary.dropout.unique()) == sorted(cfg["models"]["dropouts"]) and set(summary.text) == {text}
        assert set(summary[summary.words == "all"].model) == set(models) and set(summary.tolerance) == {0.01}
        for ext in ("png", "svg"):
            assert (res / f"figures/context_use_{text}.{ext}").stat().st_size > 5000
    assert not list(res.rglob(".*.tmp*")), "temporary files left behind"


def test_histograms_of_the_run_equal_np_histogram(tiny_run):
    res = tiny_run / "pristine" / "results"
    _, models, texts = _tiny_config(tiny_run / "pristine")
    act, hist = res / f"activations/{models[0]}/{texts[0]}.h5", res / f"neurons/{models[0]}/{texts[0]}/histograms.h5"
    with h5py.File(act) as a, h5py.File(hist) as h:
        for key in ("layer1/h", "layer2/c"):
            x = a[key][:].astype(np.float64)
            g = h[key]
            lo, hi, width = g.attrs["lo"], g.attrs["hi"], g.attrs["bin_width"]
            bins = int(round((hi - lo) / width))
            expected = np.stack([np.histogram(x[:, j], bins=bins, range=(lo, hi))[0] for j in range(x.shape[1])])
            np.testing.assert_array_equal(g["counts"][:], expected)
            np.testing.assert_array_equal(g["underflow"][:] + g["overflow"][:], ((x < lo) | (x > hi)).sum(axis=0))


def test_a_text_longer_than_its_split_fails_with_one_line_naming_it(tiny_workdir):
    edit_yaml(tiny_workdir / "tests/config/tiny.yaml",
              lambda c: c["texts"]["train"].update(offset=3_000_000, tokens=100))
    cfg, models, _ = _tiny_config(tiny_workdir)
    split = tiny_workdir / "results/data/wikitext-2/train.txt"
    with open(split, encoding="utf-8") as fh:
        length = sum(len(line.split()) + 1 for line in fh)  # words and an <eos> per line
    # the published split's length is known: refused before any job runs, naming the key; the dump of the last
    # valid config is left as it was
    dump = tiny_workdir / f"results/activations/{models[0]}/train.h5"
    before = (dump.stat().st_mtime_ns, dump.read_bytes())
    r = snakemake(tiny_workdir, *TINY, "-c1", f"results/activations/{models[0]}/train.h5", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Job stats" not in out
    assert (f"invalid configuration: config key texts.train: offset 3000000 + tokens 100 = 3000100 is longer than "
            f"split 'train' ({length} tokens)") in out, out[-2000:]
    assert (dump.stat().st_mtime_ns, dump.read_bytes()) == before
    # a split file of other contents (its length unknown before the download) meets the dump's own check instead,
    # here called directly on the same text: its message names the key, the split's file and its length (a job's
    # error is one line: test_atomic's test_a_failing_job_says_what_failed_in_one_line_…)
    from lstmscope.activations import ActivationsError, TextSpec, text_tokens

    with pytest.raises(ActivationsError) as err:
        text_tokens(split, TextSpec("train", "train", 3_000_000, 100))
    assert str(err.value) == (f"texts.train: offset 3000000 + tokens 100 = 3000100 is longer than split 'train' "
                              f"({split}: {length} tokens)")

"""snakemake --report on the tiny config: one HTML report with every figure and table, captioned;
and the representation-of-a-word outputs of that run.

Uses the session's complete tiny run (``tiny_run`` / ``tiny_workdir`` in conftest.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY, restored, snakemake

pytestmark = pytest.mark.workflow

CATEGORY = "Representation of a word"


def tiny_config() -> dict:
    return yaml.safe_load((REPO / "tests" / "config" / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory) -> tuple[Path, str]:
    """The report of the finished tiny run (built in a restored copy of it)."""
    work = restored(tiny_run, tmp_path_factory.mktemp("report") / "work")
    snakemake(work, *TINY, "--report", "results/report.html", timeout=600)
    path = work / "results" / "report.html"
    assert path.is_file()
    return work, path.read_text(encoding="utf-8")


def report_data(text: str, name: str) -> dict:
    """One of the report's JSON objects, ``var <name> = {...}`` in ``<script id="<name>">``."""
    m = re.search(rf'<script id="{name}">\s*var {name} = (\{{.*?\}});?\s*</script>', text, flags=re.S)
    assert m, f"no {name} in the report"
    return json.loads(m.group(1))


def reported(text: str) -> dict[str, dict]:
    """The report's results: {path: {caption, labels, ...}}."""
    return report_data(text, "results")


def test_report_holds_every_figure_of_the_project(report):
    work, text = report
    embedded = set(reported(text))
    figures = {str(p.relative_to(work)) for p in (work / "results" / "figures").rglob("*.png")}
    assert figures, "the tiny run made no figures"
    assert figures <= embedded, f"figures missing from the report: {sorted(figures - embedded)}"
    explorers = {str(p.relative_to(work)) for p in (work / "results" / "explorer").glob("*.html")}
    assert explorers and explorers <= embedded
    # a neuron explorer page goes into the report as its copy that the one-file report can show (Chromium shows no
    # embedded page over 2 MB): on the tiny run, small pages, the page itself
    folder = work / "results" / "explorer" / "neurons"
    neuron_pages = {str(p.relative_to(folder)) for p in folder.rglob("*.html")}
    models = ("d0.0_r0", "d0.5_r0")
    assert neuron_pages == {f"{m}_test.html" for m in models} | {f"report/{m}_test.html" for m in models}
    assert {f"results/explorer/neurons/report/{m}_test.html" for m in models} <= embedded
    assert not {f"results/explorer/neurons/{m}_test.html" for m in models} & embedded
    assert all((folder / "report" / f"{m}_test.html").read_bytes() == (folder / f"{m}_test.html").read_bytes()
               for m in models)


def test_report_holds_every_table_of_the_project(report):
    work, text = report
    embedded = set(reported(text))
    tables = {str(p.relative_to(work)) for p in (work / "results" / "tables").rglob("*.csv")}
    assert tables, "the tiny run made no tables"
    assert tables <= embedded, f"tables missing from the report: {sorted(tables - embedded)}"


def toggles(labels: list[dict]) -> dict[str, set]:
    """The labels the report shows as a toggle (Snakemake 9's html_reporter, abstract_results.js getData): of the
    labels after the first, one with exactly two values, each on half the results; none if more than one is."""
    found = {}
    for key in list(labels[0])[1:]:
        values = [label[key] for label in labels if key in label]
        unique = set(values)
        if len(unique) == 2 and all(values.count(v) * 2 == len(labels) for v in unique):
            found[key] = unique
    return found if len(found) == 1 else {}


def test_every_reported_file_is_labelled_and_captioned_and_no_figure_hides_behind_a_toggle(report):
    """Every result sits in a subcategory whose results share one set of labels, "figure" first (the report turns
    a later label with exactly two values, half the results each, into a toggle, which hid one of a model's two
    ablation figures), no two alike; a result without labels made the report drop its subcategory's labels."""
    _, text = report
    results = reported(text)
    categories = report_data(text, "categories")  # {category: {subcategory: [path, ...]}}
    placed = [p for subs in categories.values() for paths in subs.values() for p in paths]
    assert sorted(placed) == sorted(results)
    for category, subs in categories.items():
        for sub, paths in subs.items():
            labels = [results[p]["labels"] for p in paths]
            assert all(labels), f"{category} / {sub}: a result without labels"
            keys = {tuple(label) for label in labels}
            assert len(keys) == 1 and next(iter(keys))[0] == "figure", f"{category} / {sub}: labels {keys}"
            values = [tuple(label.values()) for label in labels]
            assert len(set(values)) == len(values), f"{category} / {sub}: two results labelled alike"
            for key, shown in toggles(labels).items():  # a toggle must switch every row between two results
                rows: dict[tuple, set] = {}
                for label in labels:
                    rows.setdefault(tuple(v for k, v in label.items() if k != key), set()).add(label[key])
                assert all(row == shown for row in rows.values()), f"{category} / {sub}: a toggle hides a result"
            assert all(results[p]["caption"].strip() for p in paths), f"{category} / {sub}: a result without caption"
            # the report lists a subcategory's results by their labels as text ("5.11" before "5.8"): the thesis's
            # figures are numbered so that they sort in its order
            numbered = sorted({m.group(1) for label in labels if (m := re.match(r"(\d+\.\d+)", label["figure"]))})
            assert numbered == sorted(numbered, key=lambda n: tuple(map(int, n.split(".")))), (category, sub, numbered)


def test_no_caption_runs_two_sentences_together(report):
    """The report renders captions with Jinja's trim_blocks: the line break after a block tag ending a line is
    dropped, and the seed-stability caption read "... the dashed line.The tables: ...". No sentence of a rendered
    caption ends without a space before the next."""
    import html

    glued = []
    for path, entry in reported(report[1]).items():
        text = html.unescape(re.sub(r"<[^>]+>", "", entry["caption"]))
        glued += [(path, text[max(0, m.start() - 30):m.end() + 10])
                  for m in re.finditer(r"[a-z)\]\"'%]\.[A-Z]", text)]
    assert glued == []


def test_report_shows_the_word_stage_with_captions(report):
    work, text = report
    assert CATEGORY in text
    results = reported(text)
    embedded = set(results)
    cfg = tiny_config()
    models = ["d0.0_r0", "d0.5_r0"]
    assert cfg["embedding"]["dropouts"] == [0.0, 0.5]
    for model in models:
        base = f"results/figures/clusters/{model}/test"
        for layer in (1, 2):
            for state in ("h", "c"):
                assert f"{base}/layer{layer}_{state}_ward_vs_single.png" in embedded
                for linkage in ("single", "ward"):
                    assert f"{base}/layer{layer}_{state}_{linkage}_numbered.png" in embedded
                    assert f"{base}/layer{layer}_{state}_{linkage}_position.png" in embedded
        assert f"{base}/highlight.png" in embedded
        assert f"results/tables/clusters/{model}_test_top_words.html" in embedded
        assert f"results/explorer/{model}_test.html" in embedded
    assert "results/figures/clusters/contiguity.png" in embedded
    for path in ("results/figures/clusters/contiguity.png", "results/tables/clusters/contiguity.csv",
                 "results/figures/clusters/contiguity_lag.png", "results/tables/clusters/contiguity_lag.csv"):
        labels = results[path]["labels"]  # the embedded models and texts, not "all"
        assert (labels["model"], labels["text"]) == ("d0.0_r0, d0.5_r0", "test"), labels
    for path in ("results/figures/clusters/seed_stability.png", "results/tables/clusters/seed_stability.csv"):
        assert path in embedded, path
        labels = results[path]["labels"]
        assert (labels["model"], labels["text"]) == ("d0.0_r0, d0.5_r0", "test"), labels
        caption = " ".join(results[path]["caption"].split())
        assert f"embedding.stability_seeds ({', '.join(map(str, cfg['embedding']['stability_seeds']))}), each map " \
               "started from random positions drawn with its seed" in caption, caption
        assert "the reference map, the one every other figure shows, has seed 42 and starts from the states' PCA" \
               in caption, caption
    mine = [p for p in embedded if "/clusters/" in p or "/explorer/" in p]
    assert all(results[p]["caption"].strip() for p in mine), "every output of the stage has a caption"
    # captions are rendered with the job's wildcards
    for phrase in ("thesis Fig. 5.8", "thesis Figs. 5.9 and 5.10", "thesis Fig. 5.11", "thesis Fig. 5.12",
                   "thesis Table 5.1", "thesis Fig. 4.2", "model d0.5_r0"):
        assert phrase in text, phrase


def test_word_stage_outputs_of_the_tiny_run(tiny_run):
    results = tiny_run / "pristine" / "results"
    cfg = tiny_config()
    n = min(cfg["embedding"]["max_tokens"], cfg["texts"]["test"]["tokens"])
    k = cfg["cluster"]["n_clusters"]
    by_lag = []
    for model in ("d0.0_r0", "d0.5_r0"):
        for layer in (1, 2):
            for state in ("h", "c"):
                emb = pd.read_csv(results / "embedding" / model / "test" / f"layer{layer}_{state}.csv",
                                  keep_default_na=False)
                assert emb["position"].tolist() == list(range(n))
                for linkage in ("single", "ward"):
                    cl = pd.read_csv(results / "clusters" / model / "test" / f"layer{layer}_{state}_{linkage}.csv",
                                     keep_default_na=False)
                    assert cl["word"].tolist() == emb["word"].tolist()
                    assert sorted(cl["cluster"].unique()) == list(range(1, k + 1))
        measures = pd.read_csv(results / "tables" / "clusters" / f"{model}_test_measures.csv")
        assert len(measures) == 8 and (measures["points"] == n).all()
        # contiguity by lag: every lag up to cluster.max_lag of every view; its lag 1 is the run length
        lags = pd.read_csv(results / "tables" / "clusters" / f"{model}_test_contiguity_lag.csv")
        max_lag = cfg["cluster"]["max_lag"]
        assert max_lag < n and len(lags) == 8 * max_lag and lags["lag"].max() == max_lag
        first = lags[lags["lag"] == 1].merge(measures, on=["layer", "state", "linkage"])
        assert len(first) == 8
        assert np.allclose(n / (1 + (n - 1) * (1 - first["same"])), first["mean_run_length"], rtol=1e-5)
        by_lag.append(lags)
        page = (results / "explorer" / f"{model}_test.html").read_text(encoding="utf-8")
        data = json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', page, flags=re.S).group(1))
        assert len(data["words"]) == n and len(data["views"]) == 4
        assert (n, cfg["texts"]["test"]["tokens"]) == (500, 600)  # the title says how much of the text is embedded
        assert data["title"] == f"lstmscope explorer · {model} · test (its first 500 of 600 tokens)"
    contiguity = pd.read_csv(results / "tables" / "clusters" / "contiguity.csv")
    assert len(contiguity) == 16
    every_lag = pd.read_csv(results / "tables" / "clusters" / "contiguity_lag.csv")
    pd.testing.assert_frame_equal(every_lag, pd.concat(by_lag, ignore_index=True))
    # one more map per view and seed of embedding.stability_seeds, each clustered as the reference map was
    seeds = cfg["embedding"]["stability_seeds"]
    assert seeds == [3]
    stability = pd.read_csv(results / "tables" / "clusters" / "seed_stability.csv")
    assert len(stability) == 16 * (1 + len(seeds)) and set(stability["seed"]) == {42, *seeds}
    assert (stability["reference"] == (stability["seed"] == 42)).all()
    assert (stability["clusters"] == k).all()
    merged = stability[stability["reference"]].merge(contiguity, on=["model", "text", "layer", "state", "linkage"])
    assert len(merged) == 16 and (merged["contiguity_ratio_x"] == merged["contiguity_ratio_y"]).all()


@pytest.mark.parametrize("neurons,offered", [(3, "among the 3 top-KL neurons"), (None, "among all the live neurons")])
def test_the_neuron_explorers_caption_names_the_neurons_offered(neurons, offered):
    """The caption is rendered with the job's params: ``neuron_explorer.neurons: null`` offers every live one."""
    from types import SimpleNamespace

    import jinja2

    job = SimpleNamespace(wildcards=SimpleNamespace(model="d0.0_r0", text="test"),
                          params=SimpleNamespace(neurons=neurons, passage_tokens=80, passage="prose"))
    text = jinja2.Template((REPO / "workflow" / "report" / "neuron_explorer.rst").read_text()).render(snakemake=job)
    assert offered in " ".join(text.split()) and "None" not in text

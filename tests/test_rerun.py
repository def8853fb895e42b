"""Rerun semantics on the tiny config: after a complete run, a change reruns exactly the jobs it touches.

The complete run happens once per test run (``tiny_run``); each test restores that finished copy to a
folder of its worker's (``tiny_workdir``), changes one thing there (never in the checkout) and asks Snakemake's
dry run what it would do. The expectations are derived from the workflow itself (its rule graph, which
rules write PNGs, which rules list a library module as input), so they hold as stages are added.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from lstmscope.imports import library_modules

from conftest import (REPO, TINY, PlannedJob, copy_repo, detailed_summary, downstream, edit_yaml, planned_jobs, snakemake,
                      rule_graph, snakemake_command, snakemake_env)

pytestmark = pytest.mark.workflow

# Rules no setting of the analysis stages may ever rerun: they are the expensive part.
UPSTREAM = {"download_wikitext2", "vocabulary", "train_lstm", "dump_activations"}
LIBRARY = "workflow/scripts/lstmscope"


def forced_jobs(workdir: Path) -> list[PlannedJob]:
    """Every job of the workflow for the current config (a forced dry run)."""
    return planned_jobs(workdir, "-F")


def job_key(job: PlannedJob) -> tuple:
    return job.rule, tuple(sorted(job.wildcards.items()))


def describe(jobs) -> str:
    return "\n  ".join(str(j) for j in jobs) or "(none)"


def assert_plan(planned: list[PlannedJob], expected_rules: set[str], all_jobs: list[PlannedJob], what: str):
    """Exactly the jobs of ``expected_rules`` (every one of their jobs) are planned, nothing else."""
    got = Counter(j.rule for j in planned)
    want = Counter(j.rule for j in all_jobs if j.rule in expected_rules)
    assert not UPSTREAM & set(got), f"{what}: plans upstream jobs:\n  {describe(j for j in planned if j.rule in UPSTREAM)}"
    assert got == want, (f"{what}: planned {dict(got)}, expected every job of {sorted(expected_rules)} = {dict(want)}\n"
                         f"planned jobs:\n  {describe(planned)}")


# ------------------------------------------------------------------------------ 1. nothing changed
def test_nothing_changed_plans_no_job(tiny_workdir):
    """Nothing planned, and a real run says so (what it costs: benchmarks/noop_overhead.py)."""
    assert planned_jobs(tiny_workdir) == [], "a complete run plans jobs again"
    r = snakemake(tiny_workdir, *TINY)
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]


# ------------------------------------------------------------------------------ 2. a figure-only setting
def test_figure_setting_reruns_only_the_figure_jobs_that_use_it(tiny_workdir):
    summary = detailed_summary(tiny_workdir)
    figure_rules = {rec.rule for path, rec in summary.items() if path.endswith(".png")}
    assert figure_rules, "the complete run wrote no PNG"
    all_jobs = forced_jobs(tiny_workdir)

    # on the command line (Snakemake passes the nested 72 as the text '72'): the same plan as in the file
    on_command_line = planned_jobs(tiny_workdir, "--config", "figures={dpi: 72}")
    assert_plan(on_command_line, figure_rules, all_jobs, "--config 'figures={dpi: 72}'")
    edit_yaml(tiny_workdir / "tests/config/tiny.yaml", lambda c: c.setdefault("figures", {}).update(dpi=72))
    planned = planned_jobs(tiny_workdir)
    assert_plan(planned, figure_rules, all_jobs, "figures.dpi changed")
    assert all("Params have changed" in j.reason for j in planned), describe(planned)
    assert sorted(map(job_key, planned)) == sorted(map(job_key, on_command_line))


def test_a_setting_equal_to_another_params_value_still_reruns_its_jobs(tiny_workdir):
    """Snakemake compares a job's params as a set of values, without names: tiny.yaml's ablation has
    neurons 2, random 2 and seed 13, so neurons 13 leaves that set as it was, as do the table's min_count 3
    and top_words 6 swapped: by their values alone neither would rerun anything. The rules also pass every param with its name
    (``named`` in common.smk). The two table settings only choose which words the table lists: the
    ablation's readings of the text (neuron_ablation) stay."""
    graph = rule_graph(tiny_workdir)
    all_jobs = forced_jobs(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "ablation={neurons: 13}")
    assert_plan(planned, downstream(graph, {"neuron_ablation"}), all_jobs, "--config 'ablation={neurons: 13}'")
    assert all("Params have changed" in j.reason for j in planned if j.rule == "neuron_ablation"), describe(planned)
    swapped = planned_jobs(tiny_workdir, "--config", "ablation={min_count: 6, top_words: 3}")
    assert_plan(swapped, downstream(graph, {"ablation_table"}), all_jobs, "min_count and top_words swapped")


def test_scoring_another_length_of_the_test_split_reruns_the_test_scores_not_the_training(tiny_workdir):
    """training.test_tokens decides only the test perplexity: the kept checkpoints are scored again (a job of its own
    per model) and the perplexity table redrawn; nothing trains again, and nothing read from the checkpoints reruns.
    Run: each test.json then holds the new count and the score of the same checkpoint, and the table shows it."""
    graph = rule_graph(tiny_workdir)
    assert downstream(graph, {"test_perplexity"}) == {"test_perplexity", "perplexity_table"}, graph
    all_jobs = forced_jobs(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "training={test_tokens: 1000}")
    assert_plan(planned, {"test_perplexity", "perplexity_table"}, all_jobs, "--config 'training={test_tokens: 1000}'")
    models = tiny_workdir / "results/models"
    kept = {p: p.read_bytes() for p in [*models.glob("*/model.pt"), *models.glob("*/metrics.json")]}
    before = {p.parent.name: json.loads(p.read_text()) for p in models.glob("*/test.json")}
    snakemake(tiny_workdir, *TINY, "--config", "training={test_tokens: 1000}", "--cores", "2")
    assert all(p.read_bytes() == b for p, b in kept.items()), "a checkpoint or metrics.json was written again"
    table = {row["model"]: float(row["test_ppl"]) for row in
             csv.DictReader((tiny_workdir / "results/tables/perplexity.csv").open(encoding="utf-8"))}
    assert sorted(before) == sorted(table) == ["d0.0_r0", "d0.5_r0"], (sorted(before), table)
    for model, old in before.items():
        new = json.loads((models / model / "test.json").read_text())
        assert old["tokens"] == 1500 and new["tokens"] == new["provenance"]["test_tokens"] == 1000, new
        assert new["provenance"]["checkpoint_sha256"] == old["provenance"]["checkpoint_sha256"]
        assert new["test_ppl"] != old["test_ppl"] and table[model] == pytest.approx(new["test_ppl"], rel=1e-12)


def test_a_training_given_fewer_cores_than_its_threads_stops_and_keeps_the_models(tiny_workdir):
    """training.threads decides the numbers on the CPU: with --cores below it (Snakemake gives the job fewer
    threads) the training stops at once with one line saying what to change, instead of training with fewer threads
    than the config, and its provenance, say. (Snakemake removes a job's old outputs before it runs: no checkpoint
    is left that looks trained with the config's threads.)"""
    models = tiny_workdir / "results/models"
    other = {p: p.read_bytes() for p in (models / "d0.5_r0").iterdir()}
    r = snakemake(tiny_workdir, *TINY, "--config", "training={threads: 2}", "--cores", "1", "--",
                  "results/models/d0.0_r0/metrics.json", check=False, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert ("lstmscope train_lstm: training.threads is 2 but this job got 1 (--cores 1?); on the CPU another thread "
            "count can change the numbers' last bits, so it does not run with fewer: give --cores 2 or more, or set "
            "training.threads: 1") in out, out[-3000:]
    assert not (models / "d0.0_r0/model.pt").exists() and not (models / "d0.0_r0/metrics.json").exists()
    assert {p: p.read_bytes() for p in (models / "d0.5_r0").iterdir()} == other  # not asked for: untouched


def test_tracking_every_neuron_reruns_only_tracking_and_the_figure_key_only_figures(tiny_workdir):
    """divergence.track (the neurons measured in tracking.csv) and divergence.top_k (the neurons of the top/bottom
    figure, those whose forget timescale the gates' table across models gives, and those the neuron matches figure
    marks) are two keys: tracking every neuron leaves the figures as they are, and the other way round."""
    graph = rule_graph(tiny_workdir)
    all_jobs = forced_jobs(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "divergence={track: null}")
    assert_plan(planned, downstream(graph, {"neuron_tracking"}), all_jobs, "--config 'divergence={track: null}'")
    planned = planned_jobs(tiny_workdir, "--config", "divergence={top_k: 2}")
    assert_plan(planned, downstream(graph, {"neuron_figures", "gates_vs_dropout", "neuron_matches_figure"}), all_jobs,
                "--config 'divergence={top_k: 2}'")
    assert "neuron_tracking" not in {j.rule for j in planned}


def test_the_words_listed_per_cluster_rerun_the_cluster_tables_only(tiny_workdir):
    """cluster.top_words is how many words Table 5.1 (cluster_measures) lists; the figures name one word per cluster
    whatever it is, so their jobs (which would write the same files) do not rerun."""
    graph = rule_graph(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "cluster={top_words: 3}")
    assert_plan(planned, downstream(graph, {"cluster_measures"}), forced_jobs(tiny_workdir),
                "--config 'cluster={top_words: 3}'")
    assert "cluster_figures" not in {j.rule for j in planned}


def test_the_longest_lag_reruns_the_lag_tables_and_their_figure_only(tiny_workdir):
    """cluster.max_lag is read by contiguity by lag alone (a rule of its own, cluster_lags): Table 5.1 and the
    measures (cluster_measures) stay, the figure of every model (cluster_contiguity) is drawn again."""
    graph = rule_graph(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "cluster={max_lag: 30}")
    assert_plan(planned, downstream(graph, {"cluster_lags"}), forced_jobs(tiny_workdir),
                "--config 'cluster={max_lag: 30}'")
    assert sorted(j.rule for j in planned) == ["cluster_contiguity", "cluster_lags", "cluster_lags"], describe(planned)


def test_the_probe_settings_rerun_the_probes_only(tiny_workdir):
    """probe.test_share, .regularisation, .kl_neurons and .window are read by the context probes alone: each model and
    text's probes and the figure of each text rerun, nothing else."""
    graph, every = rule_graph(tiny_workdir), forced_jobs(tiny_workdir)
    for setting in ("probe={test_share: 0.3}", "probe={regularisation: 0.1}", "probe={kl_neurons: 2}",
                    "probe={window: 2}"):
        planned = planned_jobs(tiny_workdir, "--config", setting)
        assert_plan(planned, downstream(graph, {"context_probes"}), every, f"--config '{setting}'")
        assert Counter(j.rule for j in planned) == {"context_probes": 4, "context_probes_vs_dropout": 2}, \
            describe(planned)


def test_the_gate_saturation_reruns_the_gates_only(tiny_workdir):
    """gates.saturation is read by the gate rules alone: each model and text's gate table and saturation plot and the
    figure of each text rerun, nothing else."""
    graph = rule_graph(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "gates={saturation: 0.2}")
    assert_plan(planned, downstream(graph, {"gate_statistics"}), forced_jobs(tiny_workdir),
                "--config 'gates={saturation: 0.2}'")
    assert Counter(j.rule for j in planned) == {"gate_statistics": 4, "gate_figures": 4, "gates_vs_dropout": 2}, \
        describe(planned)


def test_the_context_use_settings_rerun_the_context_jobs_only(tiny_workdir):
    """context_use.tolerance is read by the summary alone (what counts as enough context; no text read again); the
    lengths, positions and seed read the texts again: each model's context-use table and the summary, nothing else."""
    graph = rule_graph(tiny_workdir)
    every = forced_jobs(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "context_use={tolerance: 0.05}")
    assert Counter(j.rule for j in planned) == {"context_use_vs_dropout": 1}, describe(planned)
    for setting in ("context_use={positions: 150}", "context_use={lengths: [1, 3, 50]}", "context_use={seed: 8}"):
        planned = planned_jobs(tiny_workdir, "--config", setting)
        assert_plan(planned, downstream(graph, {"context_use"}), every, f"--config '{setting}'")
        assert Counter(j.rule for j in planned) == {"context_use": 2, "context_use_vs_dropout": 1}, describe(planned)


def test_the_passage_setting_reruns_the_figures_that_choose_a_passage(tiny_workdir):
    """heatmap.passage decides the neuron heatmaps' passages, the ablation heatmaps', the neuron explorer's "most
    active passage" and the spans Fig. 5.12 quotes (README, configuration): those jobs and what reads them rerun."""
    graph = rule_graph(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "heatmap={passage: active}")
    rules = {"text_heatmaps", "ablation_figures", "neuron_explorer", "cluster_figures"}
    assert_plan(planned, downstream(graph, rules), forced_jobs(tiny_workdir), "--config 'heatmap={passage: active}'")


def test_clustering_the_pca_space_reruns_the_clusters_only_and_reads_the_states_again(tiny_workdir):
    """cluster.space: pca keeps the t-SNE maps and reruns the clustering and what follows it; each clustering job
    then reads the activations file too, and its table holds the map's clusters beside those of the PCA space."""
    graph = rule_graph(tiny_workdir)
    all_jobs = forced_jobs(tiny_workdir)
    planned = planned_jobs(tiny_workdir, "--config", "cluster={space: pca}")
    assert_plan(planned, downstream(graph, {"cluster_tokens"}), all_jobs,
                "--config 'cluster={space: pca}'")
    for job in planned:
        if job.rule == "cluster_tokens":
            assert f"results/activations/{job.wildcards['model']}/{job.wildcards['text']}.h5" in job.inputs, job
    snakemake(tiny_workdir, *TINY, "--config", "cluster={space: pca}", "--until", "cluster_measures")
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    for model in ("d0.0_r0", "d0.5_r0"):  # tiny.yaml's embedding.dropouts
        path = tiny_workdir / f"results/tables/clusters/{model}_test_measures.csv"
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        assert {r["space"] for r in rows} == {"pca"} and len(rows) == 8, path
        for r in rows:  # each view's agreement between the states' clusters and the map's, as its table holds them
            clusters = pd.read_csv(tiny_workdir / f"results/clusters/{model}/test/layer{r['layer']}_{r['state']}_"
                                                  f"{r['linkage']}.csv")
            assert float(r["map_ari"]) == pytest.approx(
                adjusted_rand_score(clusters["map_cluster"], clusters["cluster"]), abs=1e-6), (path, r)
    table = tiny_workdir / "results/clusters/d0.0_r0/test/layer2_c_ward.csv"
    assert table.read_text().splitlines()[0] == "position,word,x,y,cluster,map_cluster"
    log = (tiny_workdir / "results/logs/cluster_tokens/d0.0_r0/test/layer2_c_ward.log").read_text()
    assert "ward linkage of the PCA space (10 dimensions): 500 points -> 5 clusters" in log


def test_a_threshold_per_linkage_cuts_each_linkage_at_its_own_and_another_ward_threshold_reclusters_ward_only(
        tiny_workdir):
    """One distance cuts single and ward linkage very differently (ward's merge heights grow with the clusters'
    sizes), so cluster.distance_threshold may be given per linkage; changing ward's reruns none of single's jobs."""
    views = [f"results/clusters/d0.0_r0/test/layer2_c_{linkage}.csv" for linkage in ("single", "ward")]
    first = "cluster={n_clusters: null, distance_threshold: {single: 2.0, ward: 60.0}}"
    snakemake(tiny_workdir, *TINY, "--config", first, "--", *views)
    logs = {linkage: (tiny_workdir / f"results/logs/cluster_tokens/d0.0_r0/test/layer2_c_{linkage}.log").read_text()
            for linkage in ("single", "ward")}
    assert "cut at distance 2.0" in logs["single"] and "cut at distance 60.0" in logs["ward"], logs
    planned = planned_jobs(tiny_workdir, "--config", first.replace("60.0", "90.0"), "--", *views)
    assert [(j.rule, j.wildcards["linkage"]) for j in planned] == [("cluster_tokens", "ward")], describe(planned)


def test_another_stability_seed_maps_only_its_views_and_reruns_only_the_stability_tables(tiny_workdir):
    """embedding.stability_seeds: a seed added makes its maps of every embedded view and reruns the stability tables,
    nothing else (the reference maps, their clusters and figures are untouched); none at all plans nothing and leaves
    the stability stage out."""
    all_jobs = forced_jobs(tiny_workdir)
    views = sum(1 for j in all_jobs if j.rule == "embed_tsne")
    planned = planned_jobs(tiny_workdir, "--config", "embedding={stability_seeds: [3, 4]}")
    assert Counter(j.rule for j in planned) == {"embed_tsne_seed": views, "cluster_stability": 2,
                                                "cluster_stability_summary": 1}, describe(planned)
    assert {j.wildcards["seed"] for j in planned if j.rule == "embed_tsne_seed"} == {"4"}
    assert planned_jobs(tiny_workdir, "--config", "embedding={stability_seeds: []}") == []
    assert not {"embed_tsne_seed", "cluster_stability"} & {j.rule for j in planned_jobs(
        tiny_workdir, "-F", "--config", "embedding={stability_seeds: []}")}
    # another start of the other maps: those maps and the tables; a t-SNE setting: every map; another reference
    # seed: the reference maps and the tables, not the other seeds' maps
    planned = planned_jobs(tiny_workdir, "--config", "embedding={stability_initialization: pca}")
    assert Counter(j.rule for j in planned) == {"embed_tsne_seed": views, "cluster_stability": 2,
                                                "cluster_stability_summary": 1}, describe(planned)
    planned = Counter(j.rule for j in planned_jobs(tiny_workdir, "--config", "embedding={n_iter: 120}"))
    assert planned["embed_tsne"] == planned["embed_tsne_seed"] == views and planned["cluster_stability"] == 2
    planned = Counter(j.rule for j in planned_jobs(tiny_workdir, "--config", "embedding={seed: 43}"))
    assert planned["embed_tsne"] == views and planned["cluster_stability"] == 2 and not planned["embed_tsne_seed"]
    # another cut of the clusters reruns the stability tables with them
    planned = {j.rule for j in planned_jobs(tiny_workdir, "--config", "cluster={n_clusters: 4}")}
    assert {"cluster_tokens", "cluster_stability", "cluster_stability_summary"} <= planned
    assert "embed_tsne_seed" not in planned


def test_settings_that_cannot_change_a_result_rerun_nothing(tiny_workdir):
    """The download is checksummed (url, timeout and retries cannot change the files), a resumed training
    is bit-identical (how often it saves cannot change the weights), and a token limit counts as the tokens read."""
    assert planned_jobs(tiny_workdir, "--config", "data={timeout_s: 5, retries: 0}") == []
    assert planned_jobs(tiny_workdir, "--config", "training={save_every_batches: 3}") == []
    # the ward limit is a memory guard, applied by the config check
    assert planned_jobs(tiny_workdir, "--config", "cluster={ward_max_points: 4000}") == []
    # a limit past the text's length (600 tokens) reads the same tokens: the job depends on what it reads
    assert planned_jobs(tiny_workdir, "--config", "ablation={max_tokens: 601}") == []
    assert planned_jobs(tiny_workdir, "--config", "ablation={max_tokens: null}") == []


def test_no_embedding_limit_embeds_the_whole_text_as_a_limit_of_its_length_does(tiny_workdir):
    """embedding.max_tokens: null embeds all of the text (600 tokens; the tiny config embeds 500): the jobs a limit
    of the text's length reruns (both give the param the tokens read, common.smk's tokens_read)."""
    whole = planned_jobs(tiny_workdir, "--config", "embedding={max_tokens: null}")
    assert "embed_tsne" in {j.rule for j in whole}
    assert sorted(map(job_key, whole)) == sorted(map(job_key, planned_jobs(tiny_workdir, "--config",
                                                                           "embedding={max_tokens: 600}")))


@pytest.mark.parametrize("restated", [
    "training={clip: 0.25}",  # a key named on the command line comes first in its section (the rest: config.yaml's order)
    "architecture={hidden_size: 16}",
    "texts={test: {tokens: 600, split: test, offset: 0}}",
    "training={lr: 20}",  # 20 for 20.0
    "histogram={cell_range: [-10, 10]}",
    "embedding={layers: [2, 1], states: [c, h]}",  # lists whose order means nothing
    "cluster={linkages: [ward, single]}",
    "cluster={space: map}",
])
def test_a_restated_setting_reruns_nothing(tiny_workdir, restated):
    """Snakemake compares params by their repr; the config is brought to one spelling (lstmscope.config.canonical),
    so the same setting in another key order, as an int for a float, or as a reordered set plans no job."""
    assert planned_jobs(tiny_workdir, "--config", restated) == []


# ------------------------------------------------------------------------------ 3. a histogram setting
def test_histogram_setting_reruns_histograms_divergence_and_their_figures_only(tiny_workdir):
    graph = rule_graph(tiny_workdir)
    assert "neuron_histograms" in graph, f"no neuron_histograms rule in {sorted(graph)}"
    expected = downstream(graph, {"neuron_histograms"})
    assert "neuron_divergence" in expected
    all_jobs = forced_jobs(tiny_workdir)

    edit_yaml(tiny_workdir / "tests/config/tiny.yaml", lambda c: c.setdefault("histogram", {}).update(bin_width=0.02))
    planned = planned_jobs(tiny_workdir)
    assert_plan(planned, expected, all_jobs, "histogram.bin_width changed")


# ------------------------------------------------------------------------------ 4. library code edited
def test_editing_the_divergence_code_reruns_only_divergence_and_what_depends_on_it(tiny_workdir):
    module = tiny_workdir / LIBRARY / "divergence.py"
    assert module.is_file(), f"{module} is missing"
    all_jobs = forced_jobs(tiny_workdir)
    users = {j.rule for j in all_jobs if any(i.endswith("lstmscope/divergence.py") for i in j.inputs)}
    assert "neuron_divergence" in users, f"neuron_divergence does not list divergence.py among its inputs: {sorted(users)}"
    expected = downstream(rule_graph(tiny_workdir), users)

    time.sleep(0.01)  # a later modification time than every output, on any file system clock
    with open(module, "a", encoding="utf-8") as fh:  # a real change of the module's code
        fh.write("\n\ndef _edited_by_test_rerun() -> int:\n    return 1\n")
    planned = planned_jobs(tiny_workdir)
    assert_plan(planned, expected, all_jobs, "divergence.py edited")
    assert "neuron_histograms" not in {j.rule for j in planned}
    # the cluster figures share the heatmaps' choice of passage (lstmscope.wikitext), not the heatmaps' module,
    # which reads the divergence tables: nothing of the t-SNE maps reruns
    assert not {j.rule for j in planned} & {"embed_tsne", "cluster_tokens", "cluster_figures", "cluster_comparison",
                                            "cluster_measures", "highlight_word", "explorer", "cluster_contiguity"}
    # the expectancy figure draws with the heatmaps' module; the neuron heatmaps' choice of neurons by KL is a
    # module of its own (lstmscope.neuron_heatmaps): the expectancy figures do not rerun
    assert "expectancy_heatmap" not in {j.rule for j in planned} and "text_heatmaps" in {j.rule for j in planned}


def test_editing_the_cluster_measures_reruns_no_context_job(tiny_workdir):
    """The context-use tables class their words as the cluster tables do, and the probes count spans of a context:
    both imported them from lstmscope.cluster_measures, so that any edit of the cluster tables (Table 5.1's page
    style) reran every context-use and probe job. The word classes are a module of their own now."""
    module = tiny_workdir / LIBRARY / "cluster_measures.py"
    all_rules = {j.rule for j in forced_jobs(tiny_workdir)}
    assert {"context_use", "context_probes", "cluster_measures"} <= all_rules, sorted(all_rules)
    time.sleep(0.01)  # a later modification time than every output, on any file system clock
    with open(module, "a", encoding="utf-8") as fh:  # a real change of the module's code
        fh.write("\n\ndef _edited_by_test_rerun() -> int:\n    return 1\n")
    planned = {j.rule for j in planned_jobs(tiny_workdir)}
    assert "cluster_measures" in planned and not planned & {"context_use", "context_probes"}, sorted(planned)


def test_a_job_runs_the_library_of_the_checkout_it_runs_in_not_an_installed_one(tiny_workdir, tmp_path):
    """Snakemake appends the scripts folder to a job's sys.path, behind site-packages; the installed
    lstmscope (the editable install of the checkout these tests run from) must not win there."""
    env = snakemake_env(tiny_workdir)
    env.pop("PYTHONPATH", None)
    installed = subprocess.run([sys.executable, "-c", "import lstmscope; print(lstmscope.__file__)"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0 and str(tiny_workdir) not in installed.stdout, (
        "the test needs an installed lstmscope outside the copy (pip install -e .): " + installed.stderr[-500:])
    module = tiny_workdir / LIBRARY / "histogram.py"
    marker = tmp_path / "imported.txt"
    time.sleep(0.01)
    with open(module, "a", encoding="utf-8") as fh:  # the copy's module tells which file a job imported
        fh.write("\n\nif _os_marker := __import__('os').environ.get('LSTMSCOPE_IMPORT_MARKER'):\n"
                 "    open(_os_marker, 'a').write(__file__ + '\\n')\n")
    env["LSTMSCOPE_IMPORT_MARKER"] = str(marker)
    target = "results/neurons/d0.0_r0/test/histograms.h5"
    snakemake(tiny_workdir, *TINY, "--cores", "1", target, env=env, timeout=600)
    assert marker.exists(), f"the job that wrote {target} did not import the copy's {module}"
    # imported twice, both times the copy's: by Snakemake checking the config (the bin width) and by the job
    assert [Path(p).resolve() for p in marker.read_text().split()] == [module.resolve()] * 2


def test_memory_computed_from_the_config_doubles_on_the_retry(tiny_workdir, tmp_path):
    """The SLURM profile retries a failed job once; the rules whose memory the workflow computes from the
    config must ask for twice as much then (a job that ran out of memory would fail again otherwise).
    Each rule's script here fails on its first attempt; Snakemake's own --retries runs it again."""
    targets = {"dump_activations": "results/activations/d0.0_r0/test.h5",
               "neuron_ablation": "results/ablation/d0.0_r0/test.h5",
               "embed_tsne": "results/embedding/d0.0_r0/test/layer1_h.csv",
               "cluster_tokens": "results/clusters/d0.0_r0/test/layer1_h_ward.csv",
               "neuron_explorer": "results/explorer/neurons/d0.0_r0_test.html",
               "neuron_tracking": "results/neurons/d0.0_r0/test/tracking.csv",
               "context_probes": "results/neurons/d0.0_r0/test/probes.csv",
               "gate_statistics": "results/neurons/d0.0_r0/test/gates.csv",
               "context_use": "results/context_use/d0.0_r0/test.csv",
               "model_similarity": "results/tables/similarity_test.csv",
               "test_perplexity": "results/models/d0.0_r0/test.json"}
    for rule in targets:  # each rule's script is named after it
        path = tiny_workdir / "workflow/scripts" / f"{rule}.py"
        text = path.read_text()
        marker = tmp_path / rule
        path.write_text(f"import os as _os, sys as _sys\nif not _os.path.exists({str(marker)!r}):\n"
                        f"    open({str(marker)!r}, 'w').close()\n    _sys.exit('first attempt of {rule} fails')\n"
                        + text)
    r = snakemake(tiny_workdir, *TINY, "--cores", "2", "--retries", "1", "--forcerun", *targets, "--",
                  *targets.values(), timeout=900)
    out = r.stdout + r.stderr
    for rule in targets:
        # the first job of the rule to start fails, whichever it is (model_similarity reads every model's dump, so
        # another model's dump may run too, and be the one): its two attempts, by the outputs each block names
        attempts: dict[str, list[int]] = {}
        for block in re.findall(rf"rule {rule}:\n((?:[ \t]+\S.*\n)+)", out):
            output = re.search(r"output: (.*)", block).group(1)
            attempts.setdefault(output, []).extend(int(m) for m in re.findall(r"resources: .*?mem_mb=(\d+),", block))
        retried = [asked for asked in attempts.values() if len(asked) > 1]
        assert len(retried) == 1, f"{rule}: mem_mb of its jobs' attempts {attempts}"
        asked = retried[0]
        assert len(asked) == 2 and asked[1] == 2 * asked[0], f"{rule}: mem_mb of its two attempts {asked}"
        assert (tmp_path / rule).exists()


# ------------------------------------------------------------------------------ 5. one more dropout value
def test_adding_a_dropout_value_reruns_only_that_models_chain_and_cross_model_outputs(tiny_workdir):
    config = tiny_workdir / "tests/config/tiny.yaml"
    edit_yaml(config, lambda c: c["models"]["dropouts"].append(0.9))
    new = "d0.9_r0"
    every = forced_jobs(tiny_workdir)
    new_chain = {job_key(j) for j in every if j.wildcards.get("model") == new}
    assert any(j.rule == "train_lstm" for j in every if j.wildcards.get("model") == new)

    planned = planned_jobs(tiny_workdir)
    other_models = [j for j in planned if "model" in j.wildcards and j.wildcards["model"] != new]
    assert not other_models, f"jobs of unchanged models are planned:\n  {describe(other_models)}"
    got_chain = {job_key(j) for j in planned if j.wildcards.get("model") == new}
    assert got_chain == new_chain, (f"the new model's jobs: missing {sorted(new_chain - got_chain)}, "
                                    f"unexpected {sorted(got_chain - new_chain)}")
    cross = [j for j in planned if "model" not in j.wildcards]
    # (or they draw what such a job writes: a figure of a cross-model table)
    cross_outputs = {o for j in cross for o in j.outputs}
    not_cross = [j for j in cross if not ("Set of input files has changed" in j.reason or new in j.reason
                                          or any(o in j.reason for o in cross_outputs))]
    assert not not_cross, f"jobs planned that do not take the new model's output:\n  {describe(not_cross)}"
    assert not {"download_wikitext2", "vocabulary"} & {j.rule for j in planned}, describe(planned)
    # the cross-model tables and figures are among them
    assert "perplexity_table" in {j.rule for j in cross}, describe(cross)


def test_reordered_models_and_texts_rerun_nothing_and_tables_of_several_keep_their_rows(tiny_workdir):
    """Listing the dropouts and the texts in another order changes no result, so nothing reruns; and the tables of
    several models or texts, written again from the reordered config, are byte for byte the kept ones (their rows
    follow dropout and text name, not the config's order)."""
    config = tiny_workdir / "tests/config/tiny.yaml"

    def reverse_texts(c):  # in both files: the texts of config.yaml stay first when tiny.yaml updates them
        c["texts"] = dict(reversed(list(c["texts"].items())))

    def reorder(c):
        c["models"]["dropouts"].reverse()
        reverse_texts(c)
        for section in ("embedding", "neuron_explorer", "ablation"):
            if isinstance(c.get(section, {}).get("dropouts"), list):
                c[section]["dropouts"].reverse()
            if isinstance(c.get(section, {}).get("texts"), list):
                c[section]["texts"].reverse()

    edit_yaml(config, reorder)
    edit_yaml(tiny_workdir / "config.yaml", reverse_texts)
    reordered = yaml.safe_load(config.read_text())
    assert reordered["models"]["dropouts"] == [0.5, 0.0] and list(reordered["texts"]) == ["train", "test"], reordered
    assert planned_jobs(tiny_workdir) == []
    several = sorted({j.rule for j in forced_jobs(tiny_workdir)
                      if "model" not in j.wildcards and j.rule not in UPSTREAM and j.rule != "all"})
    assert {"perplexity_table", "histogram_range_table", "cluster_contiguity"} <= set(several), several
    tables = sorted((tiny_workdir / "results/tables").rglob("*.csv"))
    kept = {p: p.read_bytes() for p in tables}
    snakemake(tiny_workdir, *TINY, "--cores", "2", "--forcerun", *several)
    changed = [str(p.relative_to(tiny_workdir)) for p in tables if p.read_bytes() != kept[p]]
    assert not changed, f"written in another order from the reordered config: {changed}"


# ------------------------------------------------------------------------------ the checkout moved
def absolute_inputs(jobs: list[PlannedJob], root: Path) -> set[tuple[str, str]]:
    return {(j.rule, i) for j in jobs for i in j.inputs if i.startswith(str(root))}


def test_no_rule_lists_an_input_by_its_absolute_path(tmp_path, wikitext2):
    """Inputs inside the checkout are relative paths: Snakemake records the set of a job's input paths,
    so an absolute one makes a moved or re-cloned checkout rerun the job and all that follows."""
    work = copy_repo(tmp_path / "work", wikitext2)
    jobs = forced_jobs(work)
    # the plan's inputs were read: every job but the download lists some, the library's modules by relative path
    assert jobs and all(j.inputs for j in jobs if j.rule not in ("download_wikitext2", "all")), describe(jobs)[:2000]
    assert any("workflow/scripts/lstmscope/__init__.py" in j.inputs for j in jobs)
    found = absolute_inputs(jobs, work)
    assert not found, f"absolute input paths: {sorted(found)[:10]}"


def test_a_moved_checkout_plans_no_job(tiny_workdir, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_workdir, moved, symlinks=True)
    planned = planned_jobs(moved)
    assert planned == [], f"a moved checkout plans:\n  {describe(planned)}"


# ------------------------------------------------------------------------------ same content, same bytes
SAVE_TWICE = """
import sys, torch
sys.path.insert(0, sys.argv[2])
from lstmscope.model import LSTMLanguageModel, ModelConfig, save_checkpoint
torch.manual_seed(0)
save_checkpoint(sys.argv[1], LSTMLanguageModel(ModelConfig(vocab_size=20, embedding_size=4, hidden_size=5,
                layers=1, dropout=0.0)), "0" * 64, extra={"name": "probe"})
"""


def test_the_same_checkpoint_is_written_byte_for_byte(tmp_path):
    """Two processes saving the same model write the same bytes (a rerun that changes nothing keeps
    the checkpoint's digest, which every activations file records)."""
    import zipfile

    paths = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        path = tmp_path / run / "model.pt"
        subprocess.run([sys.executable, "-c", SAVE_TWICE, str(path), str(REPO / "workflow" / "scripts")], check=True)
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes(), zipfile.ZipFile(paths[0]).namelist()[:3]


def test_a_figure_drawn_again_is_the_same_bytes(tiny_workdir, tmp_path):
    """A figure job run again on the same inputs writes the same PNG and SVG bytes (no date in the SVG, its ids
    salted, not random; the t-SNE scatter's points are an image inside it), and a command's PDF drawn again a
    second later is the same bytes too."""
    from lstmscope.figures import plt, save_figure_as

    figures = sorted((tiny_workdir / "results/figures").rglob("highlight.*")) + sorted(
        (tiny_workdir / "results/figures").glob("perplexity_vs_dropout.*"))
    assert {p.suffix for p in figures} == {".png", ".svg"} and len(figures) >= 4, figures
    assert any("<image" in p.read_text() for p in figures if p.suffix == ".svg")
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in figures}
    snakemake(tiny_workdir, *TINY, "--cores", "2", "--forcerun", "highlight_word", "perplexity_table")
    assert all(p.stat().st_mtime_ns > kept[p][1] for p in figures), "not drawn again"
    changed = [str(p.relative_to(tiny_workdir)) for p in figures if p.read_bytes() != kept[p][0]]
    assert not changed, f"other bytes from the same inputs: {changed}"
    pdfs = []
    for name in ("a", "b"):
        fig, ax = plt.subplots()
        ax.imshow([[0.0, 1.0], [2.0, 3.0]])
        save_figure_as(fig, tmp_path / f"{name}.pdf")
        pdfs.append((tmp_path / f"{name}.pdf").read_bytes())
        time.sleep(1.1)  # a PDF's date had seconds
    assert pdfs[0] == pdfs[1]


# ------------------------------------------------------------------------------ static checks: params and code inputs
ADAPTERS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


# Read from the config on purpose: they cannot change the job's result, so a change must rerun nothing
# (test_settings_that_cannot_change_a_result_rerun_nothing).
FROM_CONFIG = {"download_wikitext2.py": ['snakemake.config["data"]'],
               "train_lstm.py": ['snakemake.config["training"]["save_every_batches"]'],
               "cluster_tokens.py": ['snakemake.config["cluster"]["ward_max_points"]'],
               "cluster_stability.py": ['snakemake.config["cluster"]["ward_max_points"]']}


@pytest.mark.parametrize("script", ADAPTERS, ids=lambda p: p.name)
def test_scripts_take_values_through_params_not_config(script):
    text = script.read_text()
    for allowed in FROM_CONFIG.get(script.name, []):
        assert allowed in text, f"{script.name} no longer reads {allowed}: update FROM_CONFIG"
        text = text.replace(allowed, "")
    assert not re.search(r"snakemake\.config\b", text), (
        f"{script.relative_to(REPO)} reads snakemake.config: a change of that value would not rerun the job; "
        "pass it through params:")


def rule_scripts(rules_dir: Path) -> dict[str, Path]:
    """{rule: its script} read from workflow/rules/*.smk."""
    out = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, flags=re.M | re.S):
            s = re.search(r"^\s+script:\s*\n?\s*[\"']([^\"']+)[\"']", m.group(2), flags=re.M)
            if s:
                out[m.group(1)] = (smk.parent / s.group(1)).resolve()
    return out


def test_editing_logging_or_provenance_code_retrains_nothing_but_reruns_the_rest(tiny_workdir):
    """The training lists only the modules that decide the weights (common.smk's RECORD_ONLY left out): an edit
    of the logging or the provenance reruns the jobs that record them, not hours of training; an edit of the
    model retrains."""
    time.sleep(0.01)  # a later modification time than every output, on any file system clock
    for name in ("provenance.py", "joblog.py", "atomic.py"):
        with open(tiny_workdir / LIBRARY / name, "a", encoding="utf-8") as fh:
            fh.write("\n\ndef _edited_by_test_rerun() -> int:\n    return 1\n")
    planned = {j.rule for j in planned_jobs(tiny_workdir)}
    assert not planned & {"download_wikitext2", "vocabulary", "train_lstm"}, planned
    assert {"test_perplexity", "dump_activations", "neuron_histograms"} <= planned, planned
    with open(tiny_workdir / LIBRARY / "model.py", "a", encoding="utf-8") as fh:
        fh.write("\n\ndef _edited_by_test_rerun() -> int:\n    return 1\n")
    assert "train_lstm" in {j.rule for j in planned_jobs(tiny_workdir)}


# what a rule's lib(...) leaves out of the modules its script imports (common.smk: lib(..., computing=True))
RECORD_ONLY = {rule: {"atomic", "joblog", "provenance"} for rule in ("download_wikitext2", "vocabulary", "train_lstm")}


def test_every_rule_lists_exactly_the_library_modules_its_script_imports(tmp_path, wikitext2):
    """lib(...) names a script; this checks that it names the rule's own (tests/test_imports.py checks what
    library_modules reads from a script), every module it imports but those RECORD_ONLY leaves out."""
    work = copy_repo(tmp_path / "work", wikitext2)
    package = work / LIBRARY
    scripts = rule_scripts(work / "workflow" / "rules")
    listed: dict[str, set[str]] = {}
    for job in forced_jobs(work):
        mods = {Path(i).stem for i in job.inputs
                if i.endswith(".py") and (Path(i).parent == package or i.startswith(f"{LIBRARY}/"))}
        listed.setdefault(job.rule, set()).update(mods)
    assert listed, "no jobs"
    assert len(scripts) >= 30 and set(scripts) <= set(listed) | {"all"}, sorted(scripts)  # the rules were parsed
    problems = []
    for rule in sorted(listed):
        if rule not in scripts:
            continue
        needed = set(library_modules(scripts[rule], package)) - RECORD_ONLY.get(rule, set())
        missing = needed - listed[rule]
        if missing:
            problems.append(f"{rule} ({scripts[rule].name}) imports {sorted(missing)} but does not list them "
                            "with lib(...): editing them would not rerun it")
        extra = listed[rule] - needed
        if extra:
            problems.append(f"{rule} ({scripts[rule].name}) lists {sorted(extra)} with lib(...) but never imports "
                            "them: editing them would rerun it for nothing")
    assert not problems, "\n  ".join(["rule inputs and imports differ:", *problems])


def test_a_training_job_killed_with_snakemake_resumes_under_snakemake_to_the_uninterrupted_weights(tmp_path, wikitext2):
    """Snakemake and its training job killed outright (``kill -9`` of the process group, a power cut) after the job
    saved its state: ``snakemake --unlock``, then the same command resumes the training from ``resume.pt`` (the
    default profile's ``--rerun-incomplete``) and ends with the weights of a run never interrupted."""
    import torch

    # more batches than the tiny config's, so that the kill comes between a save and the end
    longer = ("--config", "training={train_tokens: 60000, epochs: 3}")
    target = "results/models/d0.0_r0/model.pt"
    reference = copy_repo(tmp_path / "reference", wikitext2)
    snakemake(reference, target, *TINY, *longer)
    work = copy_repo(tmp_path / "work", wikitext2)
    resume, model = work / "results/models/d0.0_r0/resume.pt", work / target
    proc = subprocess.Popen([*snakemake_command(), target, *TINY, *longer], cwd=work,
                            env=snakemake_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not resume.exists():
            assert proc.poll() is None, proc.stderr.read()[-5000:]
            assert time.monotonic() < deadline, "no saved training state within 600 s"
            time.sleep(0.02)
        time.sleep(0.05)  # into the training after the save (written atomically: complete once it exists)
    finally:
        with contextlib.suppress(ProcessLookupError):  # (Snakemake gone already: the assertion above says why)
            os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job at once
        proc.communicate(timeout=60)
    assert not model.exists(), "the training ended before the kill: nothing was interrupted"
    locked = snakemake(work, target, *TINY, *longer, check=False)
    assert locked.returncode != 0 and "LockException" in locked.stdout + locked.stderr  # as README says
    snakemake(work, "--unlock", *TINY, *longer)
    snakemake(work, target, *TINY, *longer)
    metrics = json.loads((work / "results/models/d0.0_r0/metrics.json").read_text())
    assert metrics["resumed_from"] is not None, metrics  # it continued from the saved state, not from the start
    resumed = torch.load(model, weights_only=True)["state_dict"]
    uninterrupted = torch.load(reference / target, weights_only=True)["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), name

"""profiles/slurm on a real SLURM cluster, and both profiles without one.

The cluster test stands up a single-node SLURM (munge, slurmctld, slurmd; tests/slurm/start-slurm.sh)
on localhost with two GRES "gpu" slots backed by no real device, runs the tiny config through
``--profile profiles/slurm`` and compares every result with the local run of the same config. It
then stops exactly the daemons it started. Without root or apt the test is skipped (CI=true: fails).

The profile is used as committed; only its SITE settings (partition, account, GPU type) are replaced
in the test's copy, as a user does for their cluster, and two polling intervals are shortened on the
command line.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import (REPO, TINY, assert_same_models, assert_same_results, copy_repo, parse_job_stats, planned_jobs,
                      rule_graph, skip_or_fail, snakemake)

SLURM_DIR = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"

# Resources that name things of one cluster; the test replaces or removes them, nothing else.
SITE_RESOURCES = {"slurm_partition", "slurm_account", "gpu_model", "gres", "constraint", "qos", "clusters"}
# Fast polling for a cluster with no queue (command line; the profile keeps values for real clusters).
TEST_SPEED = ("--slurm-status-command", "squeue",  # no slurmdbd here, so no sacct
              "--slurm-init-seconds-before-status-checks", "1",
              "--seconds-between-status-checks", "2")


def site_profile(profile: dict, partition: str) -> dict:
    """``profile`` with every partition set to ``partition`` and the other SITE resources removed."""
    out = yaml.safe_load(yaml.safe_dump(profile))

    def localise(resources: dict) -> dict:
        res = {k: v for k, v in resources.items() if k not in SITE_RESOURCES}
        if "slurm_partition" in resources:
            res["slurm_partition"] = partition
        return res

    out["default-resources"] = localise(out.get("default-resources") or {})
    out["set-resources"] = {rule: localise(res) for rule, res in (out.get("set-resources") or {}).items()}
    return out


def _without_site(profile: dict) -> dict:
    p = yaml.safe_load(yaml.safe_dump(profile))
    for res in [p.get("default-resources") or {}, *(p.get("set-resources") or {}).values()]:
        for k in SITE_RESOURCES:
            res.pop(k, None)
    return p


# ------------------------------------------------------------------------------ no cluster needed
def test_site_profile_changes_only_site_settings():
    profile = yaml.safe_load(PROFILE.read_text())
    local = site_profile(profile, "debug")
    assert _without_site(local) == _without_site(profile)
    assert profile["executor"] == "slurm"

    def resources(p: dict) -> list[dict]:
        return [p.get("default-resources") or {}, *(p.get("set-resources") or {}).values()]

    # every partition the profile names is the test cluster's; no other site setting is left
    assert sum("slurm_partition" in r for r in resources(profile)) >= 1
    assert [r.get("slurm_partition") for r in resources(local) if "slurm_partition" in r] == [
        "debug" for r in resources(profile) if "slurm_partition" in r]
    assert not any(set(r) & (SITE_RESOURCES - {"slurm_partition"}) for r in resources(local))


@pytest.mark.parametrize("path", [DEFAULT_PROFILE, PROFILE], ids=["default", "slurm"])
def test_every_profile_setting_is_commented(path):
    """Each top-level setting has a comment on its line or right above it."""
    lines = path.read_text().splitlines()
    missing = []
    for i, line in enumerate(lines):
        if re.match(r"^[A-Za-z][\w-]*:", line) and "#" not in line:
            above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            if not above.lstrip().startswith("#"):
                missing.append(line)
    assert not missing, f"{path.relative_to(REPO)}: settings without a comment: {missing}"


def test_slurm_profile_names_only_rules_of_the_workflow(tmp_path, wikitext2):
    work = copy_repo(tmp_path / "work", wikitext2)
    r = snakemake(work, "--list-rules", *TINY)
    rules = set(re.findall(r"^(\w+)\s*$", r.stdout, flags=re.M))
    assert "train_lstm" in rules, r.stdout
    profile = yaml.safe_load(PROFILE.read_text())
    named = set(profile.get("set-resources") or {}) | set(profile.get("groups") or {})
    assert named <= rules, f"profiles/slurm names rules the workflow does not have: {sorted(named - rules)}"
    # a grouped rule that shares no file with another rule of its group is a SLURM job of its own all the same, only
    # under a group's log path, which names no model or text
    groups = profile.get("groups") or {}
    graph = rule_graph(work)
    alone = [rule for rule, group in groups.items()
             if not any(groups.get(other) == group for other in graph.get(rule, set()))
             and not any(group == groups.get(up) and rule in down for up, down in graph.items())]
    assert not alone, f"profiles/slurm groups rules that join no other rule of their group: {alone}"


@pytest.mark.parametrize("profile", [None, "profiles/slurm"], ids=["default", "slurm"])
def test_lint_is_clean(tmp_path, wikitext2, profile):
    work = copy_repo(tmp_path / "work", wikitext2)
    r = snakemake(work, "--lint", *(("--profile", profile) if profile else ()), check=False, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out[-4000:]


def test_thesis_preset_dry_run_plans_the_full_experiment_on_slurm(tmp_path):
    work = copy_repo(tmp_path / "work")
    preset = yaml.safe_load((work / "presets" / "thesis.yaml").read_text())
    # every neuron tracked: the tracking jobs read 2000 neurons' values of a layer and state at once
    (work / "track-all.yaml").write_text("divergence:\n  track: null\n")
    r = snakemake(work, "-n", "--profile", "profiles/slurm", "--cores", "8", "--configfile", "presets/thesis.yaml",
                  "track-all.yaml", timeout=600)
    text = r.stdout + r.stderr
    counts = parse_job_stats(text)
    models = len(preset["models"]["dropouts"]) * preset["models"].get("replicates", 1)
    texts = len(preset["texts"])
    emb = preset["embedding"]
    layers = emb["layers"] or range(1, preset["architecture"]["layers"] + 1)  # null: every layer
    assert len(layers) == 2
    views = len(layers) * len(emb["states"])
    embedded = len(emb["dropouts"]) * len(emb["texts"])
    assert counts["download_wikitext2"] == 1 and counts["vocabulary"] == 1
    assert counts["train_lstm"] == counts["test_perplexity"] == models
    assert counts["dump_activations"] == models * texts
    assert counts["neuron_histograms"] == models * texts
    assert counts["neuron_divergence"] == models * texts
    assert counts["embed_tsne"] == embedded * views
    assert counts["cluster_tokens"] == embedded * views * 2  # single and ward
    seeds = len(emb["stability_seeds"])  # more t-SNE maps of each view, clustered per model and text
    assert seeds and counts["embed_tsne_seed"] == embedded * views * seeds
    assert counts["cluster_stability"] == embedded and counts["cluster_stability_summary"] == 1
    explorer = preset["neuron_explorer"]
    assert counts["neuron_explorer"] == len(explorer["dropouts"]) * len(explorer["texts"]) == models
    ablated = models * len(preset.get("ablation", {}).get("texts", ["test"]))  # ablation.dropouts: null = every model
    assert counts["neuron_ablation"] == counts["ablation_table"] == counts["ablation_figures"] == ablated
    assert counts["ablation_vs_dropout"] == 1
    measured = models * len(preset.get("context_use", {}).get("texts", ["test"]))  # dropouts: null = every model
    assert counts["context_use"] == measured and counts["context_use_vs_dropout"] == 1
    # every training, test scoring, dump, ablation and context-use job asks SLURM for a GPU on the GPU partition (the
    # preset's devices are auto)
    blocks = re.split(r"\n(?=\s*(?:local)?rule \w+:)", text)
    for rule, n in (("train_lstm", models), ("test_perplexity", models), ("dump_activations", models * texts),
                    ("neuron_ablation", ablated), ("context_use", measured)):
        jobs = [b for b in blocks if re.match(rf"\s*rule {rule}:", b)]
        assert len(jobs) == n, rule
        for block in jobs:
            res = re.search(r"resources: (.*)", block).group(1)
            assert "gpu=1" in res and "slurm_partition=gpu" in res, (rule, res)
    # the tracking jobs ask for their values' 16 bytes per neuron and token beyond the interpreter's 1 GB (the
    # profile leaves their memory to the rule)
    hidden = preset["architecture"]["hidden_size"]
    tracking = [b for b in blocks if re.match(r"\s*rule neuron_tracking:", b)]
    assert len(tracking) == models * texts
    for block in tracking:
        text = re.search(r"wildcards: model=\S+, text=(\w+)", block).group(1)
        asked = int(re.search(r"mem_mb=(\d+)", block).group(1))
        assert asked >= 1000 + 16 * hidden * preset["texts"][text]["tokens"] / 1e6, (text, asked)
    # with the README's --cores 8 each training and test scoring job gets the preset's threads (--cores caps them
    # under SLURM)
    for block in (b for b in blocks if re.match(r"\s*rule (train_lstm|test_perplexity):", b)):
        res = re.search(r"resources: (.*)", block).group(1)
        assert re.search(r"\bthreads: 4\b", block) or "_cores=4" in res, block
        assert "cpus_per_task=4" in res, res


def test_a_cluster_run_with_fewer_cores_than_training_threads_stops_before_submitting(tmp_path):
    """profiles/default's `cores: all` wins over --profile's settings and would cap every SLURM job's threads at the
    login node's cores: the workflow stops at once, saying what to add, and submits nothing."""
    work = copy_repo(tmp_path / "work")
    r = snakemake(work, "results/data/vocabulary.json", "--profile", "profiles/slurm", "--cores", "2", "--configfile",
                  "presets/thesis.yaml", check=False, timeout=600)
    assert r.returncode != 0
    assert ("--cores is 2 (unless given: this machine's cores, profiles/default's `cores: all`) but training.threads "
            "is 4: under a cluster executor --cores caps every job's threads; add --cores 8") in r.stdout + r.stderr
    assert not (work / "results" / "logs" / "slurm").exists()  # nothing submitted


# ------------------------------------------------------------------------------ the real cluster
@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM on localhost with 2 GRES gpu slots and 4x the CPUs; stops the daemons it started."""
    if os.geteuid() != 0:
        skip_or_fail("starting SLURM needs root")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        skip_or_fail("starting SLURM needs apt-get (Debian) or installed SLURM packages")
    state = tmp_path_factory.mktemp("slurm-state")
    # SLURM_CPU_FACTOR: the node declares 4x its CPUs, so the tiny jobs (seconds of Python start-up each,
    # plus sbatch and status polling) overlap instead of queueing as many at a time as the machine has CPUs
    env = dict(os.environ, STATE_DIR=str(state), SLURM_GPUS="2", SLURM_CPU_FACTOR="4")
    before = {f: _read_or_none(f) for f in SLURM_FILES}
    if before[SLURM_CONF] is None and not _controller_alive():
        # the left-over of a run that was killed before its stop (no controller behind it): the stop must remove
        # it, not put it back, or every later sinfo and Snakemake start waits ~9 s for the missing controller
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text(LEFT_OVER)
    try:
        r = subprocess.run([str(SLURM_DIR / "start-slurm.sh")], env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail(f"start-slurm.sh failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}", pytrace=False)
        yield {"state": state, "log": r.stdout}
    finally:
        stop = subprocess.run([str(SLURM_DIR / "stop-slurm.sh")], env=env, capture_output=True, text=True,
                              timeout=120)
        planted = _read_or_none(SLURM_CONF) == LEFT_OVER
        if planted:  # start-slurm.sh failed before it took the file over: the test's own left-over goes too
            SLURM_CONF.unlink()
    assert not planted, f"stop-slurm.sh left the planted {SLURM_CONF} in place:\n{stop.stdout}"
    after = {f: _read_or_none(f) for f in SLURM_FILES}
    assert after == before, (f"stop-slurm.sh left {', '.join(str(f) for f in SLURM_FILES if after[f] != before[f])} "
                             f"other than it was before start-slurm.sh:\n{stop.stdout}")


SLURM_CONF = Path("/etc/slurm/slurm.conf")
SLURM_FILES = (SLURM_CONF, Path("/etc/slurm/gres.conf"))
LEFT_OVER = ("# Single-node test cluster on localhost - generated by start-slurm.sh\n"
             "ClusterName=leftover\nSlurmctldHost=gone(127.0.0.1)\n")


def _read_or_none(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _controller_alive() -> bool:
    pid = _read_or_none(Path("/run/slurmctld.pid"))
    comm = Path(f"/proc/{pid.strip()}/comm") if pid and pid.strip().isdigit() else None
    return comm is not None and comm.is_file() and comm.read_text().strip() == "slurmctld"


def _node_memory_mb() -> int:
    out = subprocess.run(["scontrol", "show", "node"], capture_output=True, text=True).stdout
    m = re.search(r"RealMemory=(\d+)", out)
    return int(m.group(1)) if m else 0


# the rules that run where Snakemake runs under a cluster executor (localrules in workflow/rules/*.smk)
LOCAL_RULES = ["download_wikitext2", "perplexity_table", "histogram_range_table", "neuron_tracking_table",
               "mean_abs_vs_dropout", "expectancy_heatmap", "ablation_vs_dropout", "cluster_contiguity",
               "cluster_stability_summary", "highlight_word", "context_probes_vs_dropout", "gate_figures",
               "gates_vs_dropout", "context_use_vs_dropout", "model_similarity_figure", "neuron_matches_figure"]


def test_the_local_rules_are_those_the_slurm_test_checks():
    """The rule files' ``localrules:`` blocks name exactly LOCAL_RULES: one added or removed there is a change the
    SLURM test must check (and README's list must name)."""
    declared = []
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?[ \t]*\n)+)", path.read_text(), flags=re.M):
            declared += re.findall(r"\w+", block)
    assert sorted(declared) == sorted(LOCAL_RULES)


@pytest.mark.slurm
@pytest.mark.workflow
def test_tiny_config_on_slurm_equals_the_local_run(slurm_cluster, tmp_path, wikitext2, request):
    # the workflow as the local run (tiny_run) has it: same code, same configs
    work = copy_repo(tmp_path / "work", wikitext2)
    profile = yaml.safe_load((work / "profiles/slurm/config.yaml").read_text())
    (work / "profiles/slurm/config.yaml").write_text(
        "# profiles/slurm with this test cluster's SITE settings (written by tests/test_slurm.py)\n"
        + yaml.safe_dump(site_profile(profile, "debug"), sort_keys=False))
    # training.device auto: the training jobs ask for gpu=1, SLURM gives each a GRES gpu slot; no CUDA
    # device is behind it, so they train on the CPU exactly as the local run did.
    (work / "tests/config/slurm-gpu.yaml").write_text("training:\n  device: auto\n")
    config = (*TINY, "tests/config/slurm-gpu.yaml")

    biggest = max(int(str(v).split("*")[0].strip().strip('"')) for res in profile["set-resources"].values()
                  for k, v in res.items() if k == "mem_mb")
    assert _node_memory_mb() >= biggest, (
        f"the test node has {_node_memory_mb()} MB; profiles/slurm asks for up to {biggest} MB per job")

    r = snakemake(work, "--profile", "profiles/slurm", *config, *TEST_SPEED, "--verbose", timeout=3000)
    out = r.stdout + r.stderr

    # jobs went through sbatch, GPU jobs with a GPU, the others without
    calls = re.findall(r"sbatch call: (.*)", out)
    assert calls, out[-5000:]
    train_calls = [c for c in calls if "rule_train_lstm" in c]
    assert len(train_calls) == 2, "\n".join(calls)
    test_calls = [c for c in calls if "/rule_test_perplexity/" in c]  # on training.device, so with a GPU too
    assert len(test_calls) == 2, "\n".join(calls)
    gpu_calls = train_calls + test_calls
    assert all("--gpus=1" in c and "-p debug" in c for c in gpu_calls), "\n".join(gpu_calls)
    assert not [c for c in calls if c not in gpu_calls and "--gpus" in c], "\n".join(calls)
    grouped = [c for c in calls if "/group_" in c]  # SLURM log path of a group job
    assert grouped, "no group job was submitted:\n" + "\n".join(calls)
    # the download runs where Snakemake runs (compute nodes often have no internet), and so do the small jobs that
    # draw a table or figure from tables or one column of a file: no sbatch call, Snakemake ran each itself
    for rule in LOCAL_RULES:
        assert not [c for c in calls if rule in c], f"{rule} went to SLURM:\n" + "\n".join(calls)
        assert f"localrule {rule}:" in out, f"{rule} did not run where Snakemake runs"
    assert (work / "results/data/vocabulary.json").is_file()
    slurm_logs = list((work / "results/logs/slurm").rglob("*.log"))
    assert slurm_logs, "no SLURM job logs under results/logs/slurm"

    # every result of the local run exists, tables and HDF5 data are identical in content (the local run is asked
    # for only now: this test runs first, conftest.py, while another test worker makes it)
    local = request.getfixturevalue("tiny_run") / "pristine"
    missing = [str(p.relative_to(local)) for p in (local / "results").rglob("*")
               if p.is_file() and "logs" not in p.parts and "benchmarks" not in p.parts
               and not (work / p.relative_to(local)).exists()]
    assert not missing, f"missing after the SLURM run: {missing}"
    compared = assert_same_results(local, work)
    assert any(f.endswith(".h5") for f in compared) and any(f.endswith(".csv") for f in compared)
    assert len(assert_same_models(local, work)) == 2

    # resuming: the same command plans nothing more
    assert planned_jobs(work, "--profile", "profiles/slurm", config=config) == []

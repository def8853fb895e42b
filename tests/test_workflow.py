"""The pipeline through Snakemake's command line: tiny config from download to the perplexity table."""
from __future__ import annotations

import csv
import http.server
import json
import math
import threading
from functools import partial

import pytest
import torch

from conftest import WIKITEXT2 as DATA
from conftest import assert_same_models, copy_repo, parse_job_stats, snakemake
from lstmscope.model import cpu_kernels

@pytest.fixture(scope="module")
def http_url():
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(DATA))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_tiny_config_from_download_to_perplexity_table(tmp_path, http_url, tiny_run):
    """Over HTTP, from the download to the perplexity table, in a fresh copy on one core: the same models,
    weight for weight, as the session's tiny run (two cores, data from a local folder)."""
    project = copy_repo(tmp_path / "project")
    r = snakemake(project, "--configfile", "tests/config/tiny.yaml", "--config", f"data={{url: '{http_url}'}}",
                  "-c1", "results/tables/perplexity.csv", check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for split in ("train", "valid", "test"):  # the files served, byte for byte
        assert (project / f"results/data/wikitext-2/{split}.txt").read_bytes() == (DATA / f"{split}.txt").read_bytes()
    rows = list(csv.DictReader(open(project / "results/tables/perplexity.csv")))
    assert [row["model"] for row in rows] == ["d0.0_r0", "d0.5_r0"]
    for ext in ("png", "svg"):
        assert (project / f"results/figures/perplexity_vs_dropout.{ext}").stat().st_size > 1000
    # every model: loadable checkpoint, metrics and test score with provenance, logs, benchmark; no resume state left
    for row in rows:
        mdir = project / "results/models" / row["model"]
        state = torch.load(mdir / "model.pt", weights_only=True)
        assert state["model_config"]["hidden_size"] == 16
        metrics = json.loads((mdir / "metrics.json").read_text())
        scored = json.loads((mdir / "test.json").read_text())
        # the table's row is its model's metrics.json and test.json; the best epoch is the one of the lowest
        # validation loss
        losses = [e["valid_loss"] for e in metrics["epochs"]]
        assert row["epochs"] == "2" and int(row["best_epoch"]) == losses.index(min(losses)) + 1 == metrics["best_epoch"]
        for key in ("dropout", "replicate", "seed", "valid_ppl"):
            assert float(row[key]) == pytest.approx(metrics[key], rel=1e-12), key
        assert float(row["test_ppl"]) == pytest.approx(scored["test_ppl"], rel=1e-12)
        assert 1 < metrics["valid_ppl"] < 2000 and 1 < scored["test_ppl"] < 2000  # vocabulary has 2000 words
        assert metrics["valid_ppl"] == pytest.approx(math.exp(min(losses)), rel=1e-9)
        assert scored["test_ppl"] == pytest.approx(math.exp(scored["test_loss"]), rel=1e-12)
        prov = metrics["provenance"]
        assert prov["seed"] == int(row["seed"]) and len(prov["checkpoint_sha256"]) == 64
        assert prov["training"]["train_tokens"] == 6000 and prov["lstmscope_version"]
        assert "test_tokens" not in prov["training"] and set(prov["data_sha256"]) == {"train", "valid"}
        assert prov["device"] == scored["provenance"]["device"] == "cpu"
        assert prov["gpu"] is None and scored["provenance"]["gpu"] is None
        # the test score names the checkpoint it scored and what it was scored on
        assert scored["provenance"]["checkpoint_sha256"] == prov["checkpoint_sha256"]
        assert scored["provenance"]["test_tokens"] == scored["tokens"] == 1500  # tiny.yaml's training.test_tokens
        assert scored["model"] == row["model"] and scored["seed"] == int(row["seed"])
        assert prov["cpu_kernels"] == cpu_kernels()  # pinned, oneDNN off, as in this process
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert not (mdir / "resume.pt").exists()
        log = (project / "results/logs/train_lstm" / f"{row['model']}.log").read_text()
        assert "epoch 2 train ppl" in log and "finished in" in log
        assert (project / "results/benchmarks/train_lstm" / f"{row['model']}.tsv").is_file()
        log = (project / "results/logs/test_perplexity" / f"{row['model']}.log").read_text()
        assert "test ppl" in log and "finished in" in log
    # same config, another copy, another URL, another core count -> the same numbers (reproducible on CPU)
    assert assert_same_models(tiny_run / "pristine", project) == ["d0.0_r0", "d0.5_r0"]


def test_a_file_of_a_model_or_text_the_config_does_not_name_is_no_rule_not_a_traceback(tmp_path):
    """The model and text wildcards match the configured names only: asking for another model's checkpoint (a
    dropout not in models.dropouts) or another text's activations stops in Snakemake's one line, where the
    training rule's input function used to end in a KeyError's traceback; a configured one is planned."""
    project = copy_repo(tmp_path / "project")
    for target in ("results/models/d0.35_r0/model.pt", "results/activations/d0.0_r0/nope.h5"):
        r = snakemake(project, "-n", target, timeout=120, check=False)
        out = r.stdout + r.stderr
        assert r.returncode != 0 and f"No rule to produce {target}" in out and "Traceback" not in out, out[-3000:]
    r = snakemake(project, "-n", "results/activations/d0.1_r0/test.h5", timeout=120)
    assert parse_job_stats(r.stdout)["train_lstm"] == 1


def test_dry_run_plans_nine_models(tmp_path):
    """The default config (the thesis preset's plan is checked in test_slurm, on its profile)."""
    project = copy_repo(tmp_path / "project")
    r = snakemake(project, "-n", timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = parse_job_stats(r.stdout)
    assert counts["train_lstm"] == 9
    assert counts["download_wikitext2"] == 1 and counts["vocabulary"] == 1

"""The pipeline through Snakemake's command line: tiny config from download to the perplexity table."""
from __future__ import annotations

import csv
import http.server
import json
import math
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from conftest import WIKITEXT2 as DATA
from conftest import assert_same_models
from lstmscope.model import cpu_kernels

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def copy_project(dest: Path) -> Path:
    """The project's code and configs (no results, no venv) in ``dest``."""
    for name in ["Snakefile", "config.yaml", "workflow", "presets", "profiles", "envs", "tests/config"]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    counts = {}
    block = dry_run_output.split("Job stats:", 1)[1]
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="module")
def http_url():
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(DATA))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run_snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_tiny_config_from_download_to_perplexity_table(tmp_path, http_url, tiny_run):
    """Over HTTP, from the download to the perplexity table, in a fresh copy on one core: the same models,
    weight for weight, as the session's tiny run (two cores, data from a local folder)."""
    project = copy_project(tmp_path / "project")
    r = run_snakemake(project, "--configfile", "tests/config/tiny.yaml", "--config", f"data={{url: '{http_url}'}}",
                      "-c1", "results/tables/perplexity.csv")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for split in ("train", "valid", "test"):  # the files served, byte for byte
        assert (project / f"results/data/wikitext-2/{split}.txt").read_bytes() == (DATA / f"{split}.txt").read_bytes()
    rows = list(csv.DictReader(open(project / "results/tables/perplexity.csv")))
    assert [row["model"] for row in rows] == ["d0.0_r0", "d0.5_r0"]
    for ext in ("png", "svg"):
        assert (project / f"results/figures/perplexity_vs_dropout.{ext}").stat().st_size > 1000
    # every model: loadable checkpoint, metrics with provenance, log, benchmark; no resume state left
    for row in rows:
        mdir = project / "results/models" / row["model"]
        state = torch.load(mdir / "model.pt", weights_only=True)
        assert state["model_config"]["hidden_size"] == 16
        metrics = json.loads((mdir / "metrics.json").read_text())
        # the table's row is its model's metrics.json; the best epoch is the one of the lowest validation loss
        losses = [e["valid_loss"] for e in metrics["epochs"]]
        assert row["epochs"] == "2" and int(row["best_epoch"]) == losses.index(min(losses)) + 1 == metrics["best_epoch"]
        for key in ("dropout", "replicate", "seed", "valid_ppl", "test_ppl"):
            assert float(row[key]) == pytest.approx(metrics[key], rel=1e-12), key
        assert 1 < metrics["valid_ppl"] < 2000 and 1 < metrics["test_ppl"] < 2000  # vocabulary has 2000 words
        assert metrics["valid_ppl"] == pytest.approx(math.exp(min(losses)), rel=1e-9)
        prov = metrics["provenance"]
        assert prov["seed"] == int(row["seed"]) and len(prov["checkpoint_sha256"]) == 64
        assert prov["training"]["train_tokens"] == 6000 and prov["lstmscope_version"]
        assert prov["cpu_kernels"] == cpu_kernels()  # pinned, oneDNN off, as in this process
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert not (mdir / "resume.pt").exists()
        log = (project / "results/logs/train_lstm" / f"{row['model']}.log").read_text()
        assert "epoch 2 train ppl" in log and "finished in" in log
        assert (project / "results/benchmarks/train_lstm" / f"{row['model']}.tsv").is_file()
    # same config, another copy, another URL, another core count -> the same numbers (reproducible on CPU)
    assert assert_same_models(tiny_run / "pristine", project) == ["d0.0_r0", "d0.5_r0"]


def test_dry_run_plans_nine_models(tmp_path):
    """The default config (the thesis preset's plan is checked in test_slurm, on its profile)."""
    project = copy_project(tmp_path / "project")
    r = run_snakemake(project, "-n", timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_counts(r.stdout)
    assert counts["train_lstm"] == 9
    assert counts["download_wikitext2"] == 1 and counts["vocabulary"] == 1

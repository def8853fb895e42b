"""The pipeline through Snakemake's command line: tiny config from download to the perplexity table."""
from __future__ import annotations

import csv
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wikitext-2"
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


def test_tiny_config_from_download_to_perplexity_table(tmp_path, http_url):
    project = copy_project(tmp_path / "project")
    r = run_snakemake(project, "--configfile", "tests/config/tiny.yaml", "--config", f"data={{url: '{http_url}'}}",
                      "-c2", "results/tables/perplexity.csv")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(csv.DictReader(open(project / "results/tables/perplexity.csv")))
    assert [row["model"] for row in rows] == ["d0.0_r0", "d0.5_r0"]
    for row in rows:
        assert 1 < float(row["valid_ppl"]) < 2000 and 1 < float(row["test_ppl"]) < 2000  # vocabulary has 2000 words
        assert row["epochs"] == "2"
    for ext in ("png", "svg"):
        assert (project / f"results/figures/perplexity_vs_dropout.{ext}").stat().st_size > 1000
    # every model: loadable checkpoint, metrics with provenance, log, benchmark; no resume state left
    for row in rows:
        mdir = project / "results/models" / row["model"]
        state = torch.load(mdir / "model.pt", weights_only=True)
        assert state["model_config"]["hidden_size"] == 16
        metrics = json.loads((mdir / "metrics.json").read_text())
        prov = metrics["provenance"]
        assert prov["seed"] == int(row["seed"]) and len(prov["checkpoint_sha256"]) == 64
        assert prov["training"]["train_tokens"] == 6000 and prov["lstmscope_version"]
        assert prov["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()  # pinned, as in this process
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert not (mdir / "resume.pt").exists()
        log = (project / "results/logs/train_lstm" / f"{row['model']}.log").read_text()
        assert "epoch 2 train ppl" in log and "finished in" in log
        assert (project / "results/benchmarks/train_lstm" / f"{row['model']}.tsv").is_file()
    # same config, fresh copy -> the same numbers (reproducible on CPU)
    again = copy_project(tmp_path / "again")
    shutil.copytree(project / "results/data", again / "results/data")
    r = run_snakemake(again, "--configfile", "tests/config/tiny.yaml", "--config", f"data={{url: '{http_url}'}}",
                      "-c1", "results/tables/perplexity.csv")
    assert r.returncode == 0, r.stderr[-3000:]
    rows2 = list(csv.DictReader(open(again / "results/tables/perplexity.csv")))
    assert [(r["valid_ppl"], r["test_ppl"]) for r in rows2] == [(r["valid_ppl"], r["test_ppl"]) for r in rows]


@pytest.mark.parametrize("configfile", [None, "presets/thesis.yaml"], ids=["default", "thesis"])
def test_dry_run_plans_nine_models(tmp_path, configfile):
    project = copy_project(tmp_path / "project")
    args = ["-n"] + (["--configfile", configfile] if configfile else [])
    r = run_snakemake(project, *args, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    counts = job_counts(r.stdout)
    assert counts["train_lstm"] == 9
    assert counts["download_wikitext2"] == 1 and counts["vocabulary"] == 1


def test_lint_is_clean(tmp_path):
    project = copy_project(tmp_path / "project")
    r = run_snakemake(project, "--lint", timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out[-3000:]

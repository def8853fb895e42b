"""The benchmark scripts run end to end at tiny sizes and print their ratios (no speed is asserted:
speed targets are what the scripts print, on a machine quiet enough to measure)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


def run_benchmark(name: str, *args: str, data: Path) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / name), *args]
    env = dict(os.environ, LSTMSCOPE_WIKITEXT=str(data), MPLBACKEND="Agg")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def ratio(out: str, pattern: str) -> float:
    m = re.search(pattern + NUMBER + "x", out)
    assert m, f"no line matching {pattern!r} in:\n{out}"
    value = float(m.group(1).replace(",", ""))
    assert value > 0
    return value


def test_dump_throughput_prints_its_ratios_and_ceiling(wikitext2):
    out = run_benchmark("dump_throughput.py", "--tokens", "600", "--loop-tokens", "150", "--repeats", "1",
                        data=wikitext2)
    ratio(out, r"loop / dump:\s+")
    ratio(out, r"dump / forward:\s+")
    ratio(out, r"loop / decoder:\s+")
    ratio(out, r"dump / \(forward \+ log_softmax\):\s+")
    # the ratios compare methods that compute the same numbers: the file the dump wrote holds the loop's
    assert re.search(r"the dump's h, c and log expectancy equal the loop's \(150 tokens\): True ", out), out


def test_histogram_kl_prints_ratios_ceiling_and_memory(wikitext2):
    out = run_benchmark("histogram_kl.py", "--tokens", "300", "--tokens2", "600", "--repeats", "1",
                        data=wikitext2)  # with the per-column baseline, the default
    for tokens in (300, 600):
        line = next(l for l in out.splitlines() if l.startswith(f"{tokens} tokens, CPU time"))
        ratio(line, r"chunked / ours ")
        ratio(line, r"in-memory / ours ")
        ratio(line, r"column / ours ")
        ratio(line, r"in-memory / read ")
    assert re.search(r"traced peak memory of ours: [0-9.]+ MiB at 300 tokens, [0-9.]+ MiB at 600 tokens", out)
    assert re.search(r"our counts equal np\.histogram's and our KL scipy's: True ", out), out


def test_a_text_longer_than_the_test_split_is_refused_not_cut_short(wikitext2):
    """The benchmarks cut their text from the test split: asked for more, they would time a shorter text and print
    the length asked for (and scale the loop's time to it)."""
    for name in ("dump_throughput.py", "histogram_kl.py"):
        cmd = [sys.executable, str(ROOT / "benchmarks" / name), "--tokens", "250000"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                           env=dict(os.environ, LSTMSCOPE_WIKITEXT=str(wikitext2)))
        assert r.returncode == 2 and r.stderr.splitlines()[-1] == (f"{name}: error: --tokens 250000: the test split "
                                                                   "has 245569 tokens"), r.stderr[-2000:]


def test_a_histogram_run_that_fails_ends_the_benchmark_with_its_error(tmp_path):
    """A run is a child process; one that dies (an exception, the OOM killer) sends no result, and the benchmark must
    stop saying so rather than wait for it forever."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import histogram_kl; "
            f"histogram_kl.measure('ours', {str(tmp_path / 'missing.h5')!r}, {str(tmp_path)!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 1
    assert f"{tmp_path / 'missing.h5'}: activations file not found" in r.stderr  # the child's error, shown
    assert r.stderr.splitlines()[-1] == (f"histogram_kl.py: the ours run on {tmp_path / 'missing.h5'} ended without "
                                         "a result (exit code 1; its error is above)")


def test_histogram_kl_libraries_are_timed_or_named_as_missing(wikitext2):
    import importlib.util

    out = run_benchmark("histogram_kl.py", "--tokens", "200", "--tokens2", "300", "--repeats", "1",
                        "--skip-column", "--libraries", data=wikitext2)
    for lib, module in (("fast-histogram", "fast_histogram"), ("boost-histogram", "boost_histogram")):
        if importlib.util.find_spec(module):
            line = next(l for l in out.splitlines() if l.startswith(f"300 tokens, {lib} "))
            ratio(line, rf"in-memory / {lib} ")
        else:
            assert f"{lib} is not installed: left out" in out
            assert f"tokens, {lib} " not in out
    assert "300 tokens, CPU time: chunked / ours" in out


def test_train_throughput_prints_its_ratio(wikitext2):
    out = run_benchmark("train_throughput.py", "--tokens", "3000", "--vocab", "500", "--repeats", "1",
                        data=wikitext2)
    ratio(out, r"ratio \(ours / textbook\):\s+")
    # the same recipe: the same initial weights, data and dropout draws give the same epoch loss
    assert re.search(r"the same training: mean training loss ours [0-9.]+, textbook [0-9.]+: True$", out, re.M), out


def test_gpu_training_checks_throughput_determinism_and_resume(wikitext2):
    # on the CPU (--device cpu) at the tiny preset's size: the script's own checks, not GPU numbers
    out = run_benchmark("gpu_training.py", "--device", "cpu", "--preset", "tests/config/tiny.yaml", "--tokens", "6000",
                        "--sync-batches", "4", "--check-batches", "6", data=wikitext2)
    assert re.search(r"throughput: [0-9,]+ tokens/s over 6000 tokens", out), out
    assert re.search(r"2 epochs -> [0-9.]+ h per model on this device", out), out  # the tiny preset's epochs
    assert "determinism: two runs of 6 batches: max |weight difference| 0 (bit-identical)" in out
    for how, at, resumed in (("crash", 4, 3), ("SIGTERM", 6, 6)):  # crash: back to the save at batch 3
        assert (f"resume: {how} at batch {at}, resumed from {{'epoch': 1, 'batch': {resumed}}}: max |weight "
                "difference| to the uninterrupted run 0 (bit-identical)") in out, out


def test_gate_memory_prints_both_settings_peaks_and_their_tables_agree(wikitext2):
    # two and three blocks of the gate statistics (2048 tokens each), a small width
    out = run_benchmark("gate_memory.py", "--tokens", "2500", "--tokens2", "5000", "--hidden", "32", "--vocab", "500",
                        data=wikitext2)
    for tokens in (2500, 5000):
        for label in (r"fixed threshold \(the pipeline's\)", "glibc's default"):
            assert re.search(rf"^ +{tokens} tokens, {label} +[0-9]+ MiB +[0-9.]+ s CPU$", out, re.M), out
    for label in ("fixed threshold", "glibc's default"):
        assert re.search(rf"^growth from 2500 to 5000 tokens, {label}: [+-][0-9]+ MiB$", out, re.M), out
    ratio(out, r"default / fixed peak at 5000 tokens: ")
    # the threshold changes where memory comes from, not a number of the table
    assert "both settings wrote the same table: True" in out, out


def test_similarity_prints_times_memory_and_that_ours_computed_the_textbooks_numbers(wikitext2):
    out = run_benchmark("similarity.py", "--models", "3", "--hidden", "16", "--vocab", "500", "--tokens", "1000",
                        "--tokens2", "2000", data=wikitext2)
    for tokens in (1000, 2000):
        row = next(l for l in out.splitlines() if l.strip().startswith(f"{tokens} tokens:"))
        assert re.search(r"ours +[0-9.]+ s +[0-9.]+ MiB +in memory +[0-9.]+ s +[0-9.]+ MiB", row), out
        ratio(row, r"in memory / ours ")
    assert re.search(r"^growth of ours' peak from 1000 to 2000 tokens: [+-][0-9.]+ MiB$", out, re.M), out
    assert "ours computed the textbook's numbers: True" in out, out


def test_single_linkage_gives_scikit_learns_labels(wikitext2):
    out = run_benchmark("single_linkage.py", "--sizes", "600", "--big", "--repeats", "1", data=wikitext2)
    row = next(l for l in out.splitlines() if l.split() and l.split()[0] == "600")
    assert re.search(r"\bTrue ARI 1\.000$", row), out  # the same labels as scikit-learn's single linkage
    ratio(row, r"\s")


def test_tsne_overhead_gives_the_plain_calls_coordinates(wikitext2):
    out = run_benchmark("tsne_overhead.py", "--tokens", "300", "--n-iter", "20", "--perplexity", "10",
                        "--repeats", "1", data=wikitext2)
    assert re.search(r"overhead [+-][0-9.]+ %\s+same coordinates \(to the CSV's 6 decimals\): True", out), out


def test_noop_overhead_prints_its_ratio_on_a_finished_run(tiny_workdir, wikitext2):
    out = run_benchmark("noop_overhead.py", "--workdir", str(tiny_workdir), "--repeats", "1", "--", *TINY,
                        data=wikitext2)
    ratio(out, r"no-op / start-up \(CPU\):\s+")
    assert re.search(r"overhead: +-?[0-9.]+ s wall, +-?[0-9.]+ s CPU \(target: at most 3 s\)", out), out

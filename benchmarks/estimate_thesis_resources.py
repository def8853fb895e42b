"""Expected resources of a large preset (default: presets/thesis.yaml), extrapolated from small runs.

Nothing here runs the preset itself. The script measures, on this machine:

1. the trainer on the preset's model size (vocabulary, embedding, hidden, layers) for a few batches
   on the CPU: seconds per batch and peak memory;
2. the dump's computation (``iterate_activations``: the one-stream recurrence at batch 1 and the
   expectancies) on the preset's model size for a few hundred tokens, one thread: seconds per token;
3. the whole pipeline at two small scale points (one model, the first text, one embedding view) with
   Snakemake's benchmark files: peak memory (max_rss), seconds, and the size of every output;

and extrapolates to the preset:

- GPU hours of training from the exact FLOP count (3 x the forward multiply-adds of embedding-free
  LSTM layers and decoder, per token, per epoch, plus the validation), between the effective throughput
  benchmarks/gpu_training.py measured on an H100 and an assumed floor for older cards (this script
  measures no GPU; the CPU probe checks the FLOP model against a real run);
- disk from the measured bytes per stored value (HDF5 overhead included) times the preset's values;
- test_perplexity's time from its FLOP count (one forward pass over the test tokens) at the CPU probe's
  effective throughput;
- dump_activations' time from the measured seconds per token times each text's tokens, its memory
  from the probe's peak (a recurrence at batch 1 is bound by memory bandwidth, not FLOPs: a FLOP
  extrapolation underestimates it 3-4x);
- memory and time per rule from a straight line through the two scale points in the quantity the
  rule's work grows with (see SCALE below), never below what was measured.

Every number it prints is an extrapolation and says so. Usage:

    python benchmarks/estimate_thesis_resources.py [--preset presets/thesis.yaml] [--workdir DIR]
        [--out results/benchmarks/thesis_estimate.md] [--probe-batches 3] [--probe-tokens 300] [--cores 2]
        [--reuse]
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

from common import DATA, ROOT, snakemake_command  # also puts the library on sys.path
from lstmscope.config import model_specs, validate_config

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"

# Effective throughput of the trainer on one GPU at the thesis's size (batch 20, bptt 35): 27 TFLOP/s
# MEASURED on an H100 80GB (benchmarks/gpu_training.py, 2026-11-28: 38 200 tokens/s x 707 MFLOP per
# token); 5 TFLOP/s is an ASSUMED floor for older or smaller cards (the recurrent products at batch 20
# are bound by memory bandwidth, which such cards have 3-5x less of).
GPU_TFLOPS = (5.0, 27.0)


# ------------------------------------------------------------------------------ configuration
def load_config(*files: Path) -> dict:
    cfg: dict = {}
    for f in files:
        _merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    return validate_config(cfg, SCHEMA)


def _merge(a: dict, b: dict) -> None:
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = copy.deepcopy(v)


def token_counts() -> dict[str, int]:
    from lstmscope.vocabulary import read_tokens

    return {s: len(read_tokens(DATA / f"{s}.txt")) for s in ("train", "valid", "test")}


def vocab_size(cfg: dict) -> int:
    return cfg["vocabulary"]["max_size"] or 33278  # WikiText-2 with <eos>, as the thesis


# ------------------------------------------------------------------------------ analytic model
def model_numbers(cfg: dict) -> dict[str, float]:
    """Parameters and forward multiply-adds per token of the preset's model."""
    a = cfg["architecture"]
    V, E, H, L = vocab_size(cfg), a["embedding_size"], a["hidden_size"], a["layers"]
    lstm = sum(4 * H * ((E if layer == 0 else H) + H + 2) for layer in range(L))
    params = V * E + lstm + H * V + V
    macs_forward = sum(4 * H * ((E if layer == 0 else H) + H) for layer in range(L)) + H * V
    return {"vocab": V, "params": params, "forward_flop_per_token": 2 * macs_forward,
            "train_flop_per_token": 6 * macs_forward}


# ------------------------------------------------------------------------------ probe 1: the trainer
PROBE = textwrap.dedent("""
    import json, resource, sys, time, torch
    sys.path.insert(0, {scripts!r})
    from lstmscope.model import ModelConfig
    from lstmscope.training import TrainingConfig, train
    torch.set_num_threads({threads})
    mc = ModelConfig(vocab_size={V}, embedding_size={E}, hidden_size={H}, layers={L}, dropout=0.5)
    tc = TrainingConfig(epochs=1, lr=20.0, lr_decay=4.0, clip=0.25, bptt={bptt}, batch_size={batch},
                        eval_batch_size={eval_batch}, save_every_batches=10**9, seed=1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, {V}, ({batch} * {bptt} * {batches} + 1,), generator=g)
    val = torch.randint(0, {V}, ({eval_batch} * {bptt} + 1,), generator=g)
    r = train("probe", mc, tc, ids, val, None, progress=False)
    h = r.history[0]
    print(json.dumps({{"train_seconds": h["seconds"], "eval_seconds": h["eval_seconds"],
                      "tokens": {batch} * {bptt} * {batches}, "eval_tokens": {eval_batch} * {bptt},
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
""")


def probe_training(cfg: dict, batches: int) -> dict:
    a, t = cfg["architecture"], cfg["training"]
    code = PROBE.format(scripts=str(ROOT / "workflow" / "scripts"), threads=t["threads"], V=vocab_size(cfg),
                        E=a["embedding_size"], H=a["hidden_size"], L=a["layers"], bptt=t["bptt"],
                        batch=t["batch_size"], eval_batch=t["eval_batch_size"], batches=batches)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"training probe failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ probe 2: the dump
DUMP_PROBE = textwrap.dedent("""
    import json, resource, sys, time, torch
    sys.path.insert(0, {scripts!r})
    from lstmscope.activations import iterate_activations
    from lstmscope.model import LSTMLanguageModel, ModelConfig
    torch.set_num_threads(1)  # the dump rule's threads
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig({V}, {E}, {H}, {L}, dropout=0.0)).eval()
    ids = torch.randint(0, {V}, ({tokens},)).numpy()
    for _ in iterate_activations(model, ids[:{warm}], {block}):  # warm-up: first calls allocate
        pass
    start = time.process_time()
    for _ in iterate_activations(model, ids, {block}):
        pass
    print(json.dumps({{"tokens": {tokens}, "seconds": time.process_time() - start,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
""")


def probe_dump(cfg: dict, tokens: int) -> dict:
    """CPU seconds and peak memory of the dump's computation (states and expectancies in blocks of the
    preset's chunk height, not the HDF5 writes) for ``tokens`` tokens of a model of the preset's size."""
    a = cfg["architecture"]
    block = min(tokens, cfg["activations"]["chunk_tokens"])
    code = DUMP_PROBE.format(scripts=str(ROOT / "workflow" / "scripts"), V=vocab_size(cfg), E=a["embedding_size"],
                             H=a["hidden_size"], L=a["layers"], tokens=tokens, warm=min(tokens, 20), block=block)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"dump probe failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cached_probe(path: Path, reuse: bool, what: str, run) -> dict:
    """A probe's result: read from ``path`` with --reuse when it is there, else ``run()`` and saved there."""
    if reuse and path.is_file():
        return json.loads(path.read_text())
    print(f"probe: {what} ...", file=sys.stderr)
    result = run()
    path.write_text(json.dumps(result))
    return result


# ------------------------------------------------------------------------------ probe 3: small pipeline runs
def scale_config(hidden: int, embedding: int, vocab: int, tokens: int, text_split: str) -> dict:
    """One model, one text, one embedding view, both linkages: every rule runs at least once (the copy's
    config.yaml gets these texts instead of its own, see run_scale_point)."""
    return {
        "vocabulary": {"max_size": vocab},
        "models": {"dropouts": [0.0], "replicates": 1},
        "architecture": {"embedding_size": embedding, "hidden_size": hidden, "layers": 2},
        "training": {"epochs": 1, "train_tokens": 20000, "valid_tokens": 2000, "test_tokens": 2000,
                     "device": "cpu", "threads": 1},
        "texts": {"test": {"split": text_split, "offset": 0, "tokens": tokens}},
        "embedding": {"dropouts": [0.0], "texts": ["test"], "layers": [2], "states": ["h"],
                      "max_tokens": tokens},
        "neuron_explorer": {"dropouts": [0.0], "texts": ["test"]},
    }


def run_scale_point(workdir: Path, name: str, overrides: dict, cores: int) -> Path:
    work = workdir / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in ["Snakefile", "config.yaml", "workflow", "profiles", "envs"]:
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / item)
    data_cfg = {"data": {"url": str(DATA)}}
    _merge(overrides, data_cfg)
    # Snakemake merges --configfile into config.yaml key by key, so config.yaml's other texts (train) would
    # stay: the copy's config.yaml gets the scale point's texts instead.
    base = yaml.safe_load((work / "config.yaml").read_text())
    base["texts"] = copy.deepcopy(overrides["texts"])
    (work / "config.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    (work / "scale.yaml").write_text(yaml.safe_dump(overrides))
    env = dict(os.environ, PYTHONPATH=str(work / "workflow" / "scripts"), MPLBACKEND="Agg")
    start = time.monotonic()
    r = subprocess.run([*snakemake_command(), "--configfile", "scale.yaml", "--cores", str(cores)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=7200)
    if r.returncode != 0:
        raise SystemExit(f"scale point {name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    print(f"  {name}: complete run in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return work


def read_benchmarks(work: Path) -> dict[str, dict[str, float]]:
    """{rule: max over its jobs of max_rss (MB), s, cpu_time} from results/benchmarks/<rule>/**.tsv."""
    out: dict[str, dict[str, float]] = {}
    for tsv in (work / "results" / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(work / "results" / "benchmarks").parts[0]
        if rule.endswith(".tsv"):
            continue
        with open(tsv) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:
            rec = out.setdefault(rule, {"max_rss": 0.0, "s": 0.0, "cpu_time": 0.0, "jobs": 0})
            for k in ("max_rss", "s", "cpu_time"):
                try:
                    rec[k] = max(rec[k], float(row.get(k) or 0))
                except ValueError:
                    pass
            rec["jobs"] += 1
    return out


def sizes(work: Path) -> dict[str, int]:
    res = work / "results"
    return {str(p.relative_to(res)): p.stat().st_size for p in res.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------ extrapolation
def scale_vars(cfg: dict) -> dict[str, float]:
    """The quantities the rules' work grows with, for one config."""
    a, act, emb = cfg["architecture"], cfg["activations"], cfg["embedding"]
    H, L, V = a["hidden_size"], a["layers"], vocab_size(cfg)
    tokens = max(t["tokens"] for t in cfg["texts"].values())
    points = min(emb["max_tokens"], tokens)
    lo, hi = cfg["histogram"]["cell_range"]
    bins = round((hi - lo) / cfg["histogram"]["bin_width"]) + round(2 / cfg["histogram"]["bin_width"])
    params = model_numbers(cfg)["params"]
    return {
        "const": 1.0,
        "values": tokens * L * 2 * H,                         # activations of one text (values stored)
        "dump": params + act["chunk_tokens"] * (L * 2 * H + V),  # weights + one chunk's states and logits
        "hist": L * 2 * H * bins + act["chunk_tokens"] * H,   # histogram counts + one chunk
        "tsne": points * (H + 3 * emb["perplexity"]),         # input matrix + neighbour graph
        "tsne_time": points * math.log(max(points, 2)) * emb["n_iter"],
        "ward": points ** 2,
        "points": points,
        # context_use: the words it reads (every truncated context and shuffled window) x both layers' work per word
        "context": context_words(cfg) * H * (a["embedding_size"] + H + (L - 1) * 2 * H),
    }


def context_words(cfg: dict) -> int:
    """Words a context_use job reads: context_use.positions after every length, and after the longest per shuffle."""
    cu = cfg["context_use"]  # validated: the schema's defaults filled in
    lengths = sorted(cu["lengths"])
    tokens = max((cfg["texts"][t]["tokens"] for t in cu["texts"]), default=0)
    words = min(cu["positions"], max(0, tokens - lengths[-1]))  # as many as there are where the text is short
    return words * (sum(lengths) + lengths[-1] * (len(lengths) - 1))


# rule -> (memory grows with, time grows with); rules not listed are taken as constant.
SCALE = {
    "download_wikitext2": ("const", "const"),
    "vocabulary": ("const", "const"),
    "dump_activations": ("dump", "values"),
    "neuron_histograms": ("hist", "values"),
    "neuron_divergence": ("hist", "hist"),
    "neuron_tracking": ("values", "values"),
    "text_heatmaps": ("values", "values"),
    "expectancy_heatmap": ("values", "values"),
    "neuron_figures": ("hist", "hist"),
    "embed_tsne": ("tsne", "tsne_time"),
    "embed_tsne_seed": ("tsne", "tsne_time"),   # the same t-SNE from another start
    "cluster_tokens": ("ward", "ward"),
    "cluster_stability": ("ward", "ward"),      # ward of each other seed's map of every view
    "cluster_measures": ("points", "points"),
    "cluster_figures": ("points", "points"),
    "cluster_comparison": ("points", "points"),
    "highlight_word": ("points", "points"),
    "explorer": ("points", "points"),
    "neuron_ablation": ("dump", "dump"),       # reads the text once intact and once per ablation, like a dump
    "context_use": ("dump", "context"),        # the dump's memory; reads each word predicted after every context
    "neuron_explorer": ("values", "values"),   # reads every chunk of the datasets once (the offered columns)
    "test_perplexity": ("dump", "const"),      # the weights and a window's logits; time: see main()
}


def line(x1: float, y1: float, x2: float, y2: float, x: float) -> float:
    """The straight line through (x1, y1), (x2, y2) at x; never below max(y1, y2)."""
    if x2 == x1:
        return max(y1, y2)
    slope = max(0.0, (y2 - y1) / (x2 - x1))
    return max(y1, y2, y2 + slope * (x - x2))


def fmt_hours(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=str(ROOT / "presets" / "thesis.yaml"))
    ap.add_argument("--workdir", help="where the small runs go (kept); default: a temporary folder")
    ap.add_argument("--out", default=str(ROOT / "results" / "benchmarks" / "thesis_estimate.md"))
    ap.add_argument("--probe-batches", type=int, default=3)
    ap.add_argument("--probe-tokens", type=int, default=300, help="tokens of the dump probe")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="use the small runs and the probe already in --workdir instead of running them again")
    args = ap.parse_args()

    cfg = load_config(ROOT / "config.yaml", Path(args.preset))
    counts = token_counts()
    nums = model_numbers(cfg)
    t = cfg["training"]
    models = len(model_specs(cfg))
    texts = cfg["texts"]
    train_tokens = t["train_tokens"] or counts["train"]
    eval_tokens = (t["valid_tokens"] or counts["valid"])
    test_tokens = (t["test_tokens"] or counts["test"])

    # 1. the trainer at the preset's size, on this CPU
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lstmscope-estimate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    probe = cached_probe(workdir / "train_probe.json", args.reuse,
                         f"{args.probe_batches} training batches of the preset's model on the CPU",
                         lambda: probe_training(cfg, args.probe_batches))
    cpu_flops = nums["train_flop_per_token"] * probe["tokens"] / probe["train_seconds"]
    flop_per_model = t["epochs"] * (train_tokens * nums["train_flop_per_token"] + eval_tokens * nums["forward_flop_per_token"])
    test_flop = test_tokens * nums["forward_flop_per_token"]  # rule test_perplexity, after the training
    gpu_hours = [flop_per_model / (tf * 1e12) / 3600 for tf in GPU_TFLOPS[::-1]]
    cpu_hours = flop_per_model / cpu_flops / 3600

    # 2. the dump's computation at the preset's size, on this CPU
    dump_probe = cached_probe(workdir / "dump_probe.json", args.reuse,
                              f"the dump's computation for {args.probe_tokens} tokens of the preset's model",
                              lambda: probe_dump(cfg, args.probe_tokens))
    dump_per_token = dump_probe["seconds"] / dump_probe["tokens"]

    # 3. two small scale points of the whole pipeline
    split = next(iter(texts.values()))["split"]
    points = {"S1": scale_config(hidden=32, embedding=16, vocab=2000, tokens=1000, text_split=split),
              "S2": scale_config(hidden=128, embedding=64, vocab=8000, tokens=4000, text_split=split)}
    bench, size, svars = {}, {}, {}
    for name, over in points.items():
        print(f"small run {name}: hidden {over['architecture']['hidden_size']}, "
              f"{over['texts']['test']['tokens']} tokens ...", file=sys.stderr)
        if args.reuse and (workdir / name / "results" / "benchmarks").is_dir():
            work = workdir / name
        else:
            work = run_scale_point(workdir, name, copy.deepcopy(over), args.cores)
        bench[name], size[name] = read_benchmarks(work), sizes(work)
        svars[name] = scale_vars(load_config(work / "config.yaml", work / "scale.yaml"))
    target = scale_vars(cfg)

    # disk: bytes per stored activation value, measured (HDF5 overhead included)
    act_ratio = []
    for name in points:
        h5 = [v for k, v in size[name].items() if k.startswith("activations/") and k.endswith(".h5")]
        act_ratio.append(sum(h5) / len(h5) / svars[name]["values"])
    bytes_per_value = act_ratio[-1]
    act_per_text = {name: sv["tokens"] * cfg["architecture"]["layers"] * 2 * cfg["architecture"]["hidden_size"]
                    * bytes_per_value for name, sv in texts.items()}
    act_per_model = sum(act_per_text.values())
    checkpoint = nums["params"] * 4
    resume = 2 * checkpoint  # model + best model while training (deleted when done)

    rows = []
    for rule in sorted(set(bench["S1"]) | set(bench["S2"])):
        if rule not in bench["S1"] or rule not in bench["S2"] or rule == "train_lstm":  # training: see above
            continue
        mem_var, time_var = SCALE.get(rule, ("const", "const"))
        b1, b2 = bench["S1"][rule], bench["S2"][rule]
        mem = line(svars["S1"][mem_var], b1["max_rss"], svars["S2"][mem_var], b2["max_rss"], target[mem_var])
        secs = line(svars["S1"][time_var], b1["s"], svars["S2"][time_var], b2["s"], target[time_var])
        if rule == "dump_activations":
            # the small runs are all start-up; the preset's dump is not: the probe's seconds per token
            time_var = f"tokens x {dump_per_token * 1e3:.1f} ms per token (dump probe, 1 thread)"
            secs = b2["s"] + max(v["tokens"] for v in texts.values()) * dump_per_token
            mem_var = "dump probe's peak (model of the preset's size)"
            mem = max(mem, dump_probe.get("max_rss_mb", 0.0))
        if rule == "test_perplexity":
            # the small runs are all start-up: one forward pass over the test tokens at the probe's throughput
            time_var = f"test tokens x forward FLOPs at {cpu_flops / 1e9:.0f} GFLOP/s (training probe, CPU)"
            secs = b2["s"] + test_flop / cpu_flops
        rows.append((rule, b1["max_rss"], b2["max_rss"], mem, b1["s"], b2["s"], secs, mem_var, time_var))
    a = cfg["architecture"]
    gpu_mem = 3 * nums["params"] * 4 + 3 * t["bptt"] * t["batch_size"] * nums["vocab"] * 4

    md = [f"# Expected resources of {Path(args.preset).name} (extrapolated, not measured at that scale)", "",
          f"Measured on {os.uname().nodename} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d')}. "
          f"Preset: {models} models, {a['layers']}x{a['hidden_size']} LSTM, {a['embedding_size']}-d embeddings, "
          f"vocabulary {nums['vocab']}, {t['epochs']} epochs over {train_tokens} training tokens.", "",
          "## Training (train_lstm, per model)", "",
          f"- parameters: {nums['params'] / 1e6:.1f} M; checkpoint {checkpoint / 1e9:.2f} GB; "
          f"resume state while training up to {resume / 1e9:.2f} GB",
          f"- work: {nums['train_flop_per_token'] / 1e6:.0f} MFLOP per training token; "
          f"{flop_per_model / 1e15:.1f} PFLOP per model (training + validation, exact count)",
          f"- test perplexity (test_perplexity, a job of its own): {test_flop / 1e12:.0f} TFLOP per model, "
          f"{test_flop / (GPU_TFLOPS[1] * 1e12):.0f}-{test_flop / (GPU_TFLOPS[0] * 1e12):.0f} s on a GPU, "
          f"{fmt_hours(test_flop / cpu_flops)} on this CPU (extrapolated)",
          f"- measured on this CPU ({t['threads']} threads, {probe['tokens']} tokens): "
          f"{probe['tokens'] / probe['train_seconds']:.0f} tokens/s = {cpu_flops / 1e9:.0f} GFLOP/s effective; "
          f"peak memory {probe['max_rss_mb']:.0f} MB",
          f"- on this CPU a model would take {cpu_hours:.0f} h (extrapolated) -> train on a GPU",
          f"- GPU ({GPU_TFLOPS[1]:g} TFLOP/s effective measured on an H100 by benchmarks/gpu_training.py, "
          f"{GPU_TFLOPS[0]:g} ASSUMED for older cards): "
          f"{gpu_hours[0]:.1f}-{gpu_hours[1]:.1f} GPU hours per model, "
          f"{models * gpu_hours[0]:.0f}-{models * gpu_hours[1]:.0f} GPU hours for all {models}",
          f"- host memory: the CPU probe peaked at {probe['max_rss_mb'] / 1024:.1f} GB with the model in host memory; "
          "with the model on the GPU add the CUDA context (1-2 GB)",
          f"- GPU memory (analytic: weights, gradients, best weights, three copies of one batch's logits): "
          f"{gpu_mem / 1e9:.1f} GB", "",
          "## Disk", "",
          f"- activations: {bytes_per_value:.2f} bytes per stored value measured "
          f"(dtype {cfg['activations']['dtype']}, HDF5 overhead included) -> "
          + ", ".join(f"{n}: {v / 1e9:.2f} GB" for n, v in act_per_text.items())
          + f"; {act_per_model / 1e9:.2f} GB per model, {models * act_per_model / 1e9:.1f} GB for all",
          f"- checkpoints: {models * checkpoint / 1e9:.1f} GB for all (+{resume / 1e9:.1f} GB per model while it trains)",
          "", "## Memory and time per job (straight line through two small runs, extrapolated)", "",
          "| rule | peak MB S1 | S2 | preset (extrapolated) | s S1 | S2 | preset (extrapolated) | grows with |",
          "|---|---|---|---|---|---|---|---|"]
    for rule, m1, m2, m, s1, s2, s, mv, tv in rows:
        md.append(f"| {rule} | {m1:.0f} | {m2:.0f} | {m:.0f} | {s1:.0f} | {s2:.0f} | {fmt_hours(s)} | {mv} / {tv} |")
    md += ["", "S1, S2: " + "; ".join(
        f"{n} = hidden {p['architecture']['hidden_size']}, vocabulary {p['vocabulary']['max_size']}, "
        f"{p['texts']['test']['tokens']} tokens" for n, p in points.items())
        + f"; preset: hidden {a['hidden_size']}, vocabulary {nums['vocab']}, {target['points']} embedded points.",
        "Seconds at S1/S2 are dominated by starting Python and importing libraries; memory below ~300 MB is "
        "the interpreter and libraries.", ""]
    text = "\n".join(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(json.dumps({
        "probe": probe, "dump_probe": dump_probe, "model": nums, "flop_per_model": flop_per_model,
        "test_flop_per_model": test_flop, "gpu_hours_per_model": gpu_hours,
        "cpu_hours_per_model": cpu_hours, "bytes_per_value": bytes_per_value, "activations_per_model": act_per_model,
        "rules": [dict(zip(["rule", "mem_s1", "mem_s2", "mem_preset", "s_s1", "s_s2", "s_preset", "mem_var",
                             "time_var"], r)) for r in rows]}, indent=2))
    print(text)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

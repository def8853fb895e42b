"""Histograms + KL divergence: lstmscope's streaming stage vs np.histogram one neuron at a time.

An activations file is written first (the default experiment's model shape: vocabulary
10 000, embedding 32, hidden 64, 2 layers, random weights; or --checkpoint) for each of
two text lengths (the first --tokens and --tokens2 tokens of WikiText-2's test split).
On each file, every layer and state (h on [-1, 1], c on [-10, 10], bins 0.01 wide) gets:

* ours:      ``neuron_histograms`` + ``neuron_divergence``: streams the HDF5 chunks, bins all
             neurons of a chunk with one ``np.bincount``, also keeps mean/std/|mean|/near-zero
             counts, writes histograms.h5 and the CSV tables;
* chunked:   the same streaming with np.histogram: for every chunk of rows, ``np.histogram`` of
             each neuron, counts summed; then KL(p‖q) and KL(q‖p) per neuron with
             ``scipy.stats.entropy`` (memory flat, like ours);
* column:    per neuron: read its column from the file, ``np.histogram``, the same KL (memory
             flat, but every chunk of the file is read N times);
* in-memory: read the whole (T, N) matrix, then ``np.histogram`` per neuron and the same KL
             (memory grows with the text);
* read:      only reading every dataset chunk by chunk: the floor under any method, and so the
             largest ratio to a baseline that any method could reach;
* fast-histogram, boost-histogram (only where installed; ``--libraries``): compiled histogram
             libraries, streaming like ours, one 2-D (neuron, value) histogram per chunk, then the same
             KL; counting only, no statistics, and fast-histogram drops the under/overflow.

Each run happens in a fresh process; reported are its CPU time (the ratios use it: on a
shared machine it is steadier than wall time, which is printed too) and the peak of traced
Python/numpy allocations (tracemalloc, a second untimed run; the imports are done before).
Target: ours >= 20x faster than np.histogram per neuron; our peak memory flat in the length.

Usage: python benchmarks/histogram_kl.py [--tokens 18000] [--tokens2 90000] [--hidden 64] [--repeats 3]
       [--skip-column] [--libraries]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import queue as queue_module
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import DATA, text_words, write_bench_activations  # noqa: E402  (also puts the library on sys.path)

CELL_RANGE = (-10.0, 10.0)
BIN = 0.01
EPS = 1e-10
LIBRARIES = {"fast-histogram": "fast_histogram", "boost-histogram": "boost_histogram"}


def ours(path: str, out: str) -> None:
    from lstmscope.divergence import neuron_divergence
    from lstmscope.histogram import neuron_histograms

    neuron_histograms(path, f"{out}/h.h5", f"{out}/r.csv", BIN, CELL_RANGE, 0.01)
    neuron_divergence(f"{out}/h.h5", f"{out}/d.csv", f"{out}/dead.csv", EPS, 0.01, 0.9)


def _kl(counts):
    from scipy.stats import entropy

    p = (counts + EPS) / (counts + EPS).sum(axis=1, keepdims=True)
    q = p.mean(axis=0)
    return [(entropy(p[j], q), entropy(q, p[j])) for j in range(len(p))]


def state_datasets(f):
    """Every layer's h and c dataset of an open activations file, with its interval and number of bins."""
    for layer in range(1, int(f.attrs["layers"]) + 1):
        for state in ("h", "c"):
            lo, hi = (-1.0, 1.0) if state == "h" else CELL_RANGE
            yield f[f"layer{layer}/{state}"], lo, hi, int(round((hi - lo) / BIN))


def histograms_of_columns(data, lo: float, hi: float, bins: int):
    """np.histogram of every column of a (T, N) matrix: the (N, bins) counts."""
    import numpy as np

    return np.stack([np.histogram(data[:, j], bins=bins, range=(lo, hi))[0] for j in range(data.shape[1])])


def per_neuron(path: str, out: str, kind: str) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        for ds, lo, hi, bins in state_datasets(f):
            N = ds.shape[1]
            if kind == "chunked":
                counts = np.zeros((N, bins), dtype=np.int64)
                rows = ds.chunks[0]
                for start in range(0, ds.shape[0], rows):
                    block = ds[start:start + rows]
                    for j in range(N):
                        counts[j] += np.histogram(block[:, j], bins=bins, range=(lo, hi))[0]
            elif kind == "in-memory":
                counts = histograms_of_columns(ds[:], lo, hi, bins)
            else:
                counts = np.stack([np.histogram(ds[:, j], bins=bins, range=(lo, hi))[0] for j in range(N)])
            _kl(counts)


def library(path: str, kind: str) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        for ds, lo, hi, bins in state_datasets(f):
            T, N = ds.shape
            rows = ds.chunks[0]
            if kind == "fast-histogram":
                import fast_histogram

                neuron = np.broadcast_to(np.arange(N, dtype=np.float32), (rows, N))
                counts = np.zeros((N, bins))
                for start in range(0, T, rows):
                    block = ds[start:start + rows]
                    counts += fast_histogram.histogram2d(neuron[:len(block)], block, bins=(N, bins),
                                                         range=((-0.5, N - 0.5), (lo, hi)))
            else:
                import boost_histogram as bh

                hist = bh.Histogram(bh.axis.Integer(0, N, underflow=False, overflow=False),
                                    bh.axis.Regular(bins, lo, hi), storage=bh.storage.Int64())
                neuron = np.broadcast_to(np.arange(N), (rows, N))
                for start in range(0, T, rows):
                    block = ds[start:start + rows]
                    hist.fill(neuron[:len(block)].ravel(), block.ravel())
                counts = hist.view(flow=True)  # (N, bins + 2) with under/overflow
            _kl(counts)


def read_only(path: str) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        for ds, *_ in state_datasets(f):
            for start in range(0, ds.shape[0], ds.chunks[0]):
                ds[start:start + ds.chunks[0]]


def _child(kind: str, path: str, out: str, queue) -> None:
    import h5py  # noqa: F401  imports before measuring
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import scipy.stats  # noqa: F401

    from lstmscope import divergence, histogram  # noqa: F401

    if kind in LIBRARIES:
        __import__(LIBRARIES[kind])

    start, cpu = time.perf_counter(), time.process_time()
    run = ((lambda: ours(path, out)) if kind == "ours" else (lambda: read_only(path)) if kind == "read"
           else (lambda: library(path, kind)) if kind in LIBRARIES else (lambda: per_neuron(path, out, kind)))
    run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    tracemalloc.start()  # a second run, traced (tracing slows it down; not timed)
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    queue.put((seconds, cpu, peak))


def measure(kind: str, path: str, out: str) -> tuple[float, int, int, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(kind, path, out, q))
    p.start()
    while True:  # a child that dies (an exception, the kernel's OOM killer) sends nothing: stop, do not wait forever
        try:
            result = q.get(timeout=1)
            break
        except queue_module.Empty:
            if not p.is_alive() and q.empty():
                raise SystemExit(f"histogram_kl.py: the {kind} run on {path} ended without a result "
                                 f"(exit code {p.exitcode}; its error is above)")
    p.join()
    return result


def same_as_np_histogram(path: str, out: str) -> str:
    """Whether our stage's histograms and KL are np.histogram's and scipy's (the in-memory baseline's method, plus
    the under/overflow slots ours keeps), so that its ratios compare methods that compute the same numbers."""
    import h5py
    import numpy as np
    import pandas as pd

    ours(path, out)
    table = pd.read_csv(f"{out}/d.csv")
    same_counts, gap = True, 0.0
    with h5py.File(path, "r") as f, h5py.File(f"{out}/h.h5", "r") as h:
        for ds, lo, hi, bins in state_datasets(f):
            data, g = ds[:], h[ds.name]
            counts = histograms_of_columns(data, lo, hi, bins)
            same_counts &= bool(np.array_equal(g["counts"][:], counts)
                                and np.array_equal(g["underflow"][:], (data < lo).sum(axis=0))
                                and np.array_equal(g["overflow"][:], (data > hi).sum(axis=0)))
            slots = np.concatenate([g["underflow"][:][:, None], counts, g["overflow"][:][:, None]], axis=1)
            layer, state = int(ds.name.split("/")[1].removeprefix("layer")), ds.name.split("/")[2]
            rows = table[(table.layer == layer) & (table.state == state)].sort_values("neuron")
            want = np.array(_kl(slots))
            # NaN (a missing or undefined KL) counts as the largest difference, not as none
            gap = float(np.maximum(gap, np.max(np.abs(rows[["kl_pq", "kl_qp"]].to_numpy() - want) / want)))
            gap = gap if np.isfinite(gap) else float("inf")
    return f"our counts equal np.histogram's and our KL scipy's: {same_counts and gap < 1e-6} (KL within {gap:.1e})"


def make_activations(path: Path, words: list[str], checkpoint: str | None, hidden: int = 64) -> None:
    import torch

    from lstmscope.model import LSTMLanguageModel, ModelConfig, load_checkpoint

    torch.set_num_threads(1)
    if checkpoint:
        model, _ = load_checkpoint(checkpoint)
    else:
        torch.manual_seed(0)
        model = LSTMLanguageModel(ModelConfig(10000, 32, hidden, 2, dropout=0.2)).eval()
    V = model.config.vocab_size
    ids = [sum(map(ord, w)) % V for w in words]
    write_bench_activations(model, ids, words, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--tokens", type=int, default=18000)
    ap.add_argument("--tokens2", type=int, default=90000)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--hidden", type=int, default=64, help="units per layer of the random model")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-column", action="store_true", help="leave out the per-column baseline (slow)")
    ap.add_argument("--libraries", action="store_true",
                    help="also time fast-histogram and boost-histogram, where installed")
    args = ap.parse_args()
    words = text_words(Path(args.data), ap, tokens=args.tokens, tokens2=args.tokens2)
    libraries = []
    if args.libraries:
        import importlib.util

        libraries = [k for k, module in LIBRARIES.items() if importlib.util.find_spec(module)]
        for k in sorted(set(LIBRARIES) - set(libraries)):
            print(f"{k} is not installed: left out")
    kinds = ["ours", "chunked", "in-memory"] + ([] if args.skip_column else ["column"]) + ["read"]
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for tokens in (args.tokens, args.tokens2):
            path = Path(tmp) / f"act{tokens}.h5"
            make_activations(path, words[:tokens], args.checkpoint, args.hidden)
            for kind in kinds + libraries:
                runs = [measure(kind, str(path), tmp) for _ in range(args.repeats)]
                seconds = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                peak = max(r[2] for r in runs)
                results[tokens, kind] = (cpu, peak, seconds)
                print(f"{tokens:>7} tokens  {kind:>9}: CPU {cpu:8.3f} s  wall {seconds:8.3f} s   traced peak "
                      f"{peak / 2**20:8.1f} MiB", flush=True)
        agreement = same_as_np_histogram(str(Path(tmp) / f"act{args.tokens}.h5"), tmp)
        for tokens in (args.tokens, args.tokens2):
            o = results[tokens, "ours"][0]
            line = ", ".join(f"{k} / ours {results[tokens, k][0] / o:.1f}x" for k in kinds[1:-1])
            r = results[tokens, "read"][0]
            ceiling = ", ".join(f"{k} / read {results[tokens, k][0] / r:.1f}x" for k in kinds[1:-1])
            print(f"{tokens} tokens, CPU time: {line}   (target >= 20x; the most any method could reach, "
                  f"reading alone: {ceiling})")
            for lib in libraries:
                c = results[tokens, lib][0]
                print(f"{tokens} tokens, {lib} (counting + KL, no statistics): in-memory / {lib} "
                      f"{results[tokens, 'in-memory'][0] / c:.1f}x, ours / {lib} {o / c:.2f}x")
        for kind in kinds + libraries:
            a, b = results[args.tokens, kind][1], results[args.tokens2, kind][1]
            print(f"traced peak memory of {kind}: {a / 2**20:.1f} MiB at {args.tokens} tokens, "
                  f"{b / 2**20:.1f} MiB at {args.tokens2} tokens ({b / a:.2f}x for {args.tokens2 / args.tokens:.0f}x "
                  f"the tokens)")
        print(agreement)


if __name__ == "__main__":
    main()

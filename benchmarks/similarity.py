"""The layers' CKA (``similarity.cka_table``, rule model_similarity) against the textbook computation in memory.

For ``--models`` random-weight models of ``--hidden`` units per layer (vocabulary ``--vocab``), the activations files
of the first ``--tokens`` and ``--tokens2`` tokens of WikiText-2's test split are written, and every two models' CKA
of each layer and state is computed twice: by ours (blocks of tokens, one Gram matrix of all models' neurons side by
side per layer and state, BLAS's ``syrk`` in place) and by the textbook way (each model's states read whole, centred,
and for every pair ``||XᵀY||² / (||XᵀX|| ||YᵀY||)``). It prints each one's CPU time and traced peak memory (Python's
and numpy's allocations, tracemalloc's), the ratio of times, the growth of ours' peak from the shorter text to the
longer (it should not grow: ours streams), and whether the two computed the same numbers (to 1e-9).

``--thesis-block`` also times ours on the files of ``--block-models`` random models of the thesis's width (2000) of
as many tokens as the job reads in one block there (466 at 9 models), and prints the time per block and the minutes
per 18 000-token text of two layers and two states it implies (its Gram matrix takes 2.6 GB at 9 models), then the
minutes the neuron matches add per text (the rotations' products and the one-to-one pairings).

Usage: python benchmarks/similarity.py [--models 9] [--hidden 64] [--vocab 10000] [--tokens 18000] [--tokens2 36000]
       [--thesis-block] [--block-models 9]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, text_words, write_bench_activations  # noqa: E402  (also puts the library on sys.path)


def make_files(folder: Path, words: list[str], n: int, models: int, hidden: int, vocab: int) -> list[str]:
    """The activations files of ``models`` random-weight models (seeds 0, 1, ...) of the text's first ``n`` tokens."""
    import h5py
    import torch

    from lstmscope.model import LSTMLanguageModel, ModelConfig

    torch.set_num_threads(1)
    ids = [sum(map(ord, w)) % vocab for w in words[:n]]
    paths = []
    for k in range(models):
        torch.manual_seed(k)
        model = LSTMLanguageModel(ModelConfig(vocab, min(400, hidden), hidden, 2, dropout=0.0)).eval()
        path = folder / f"m{k}_{n}.h5"
        write_bench_activations(model, ids, words[:n], path)
        with h5py.File(path, "a") as f:  # models of their own names (the writer names each "bench")
            f.attrs["model"], f.attrs["dropout"] = f"d{k / 10}_r0", k / 10
        paths.append(str(path))
    return paths


def textbook(paths: list[str]):
    """Every pair's CKA of each layer and state from the states read whole: the table's order of rows."""
    import h5py
    import numpy as np

    files = [h5py.File(p, "r") for p in paths]
    try:
        out = []
        for layer in range(1, int(files[0].attrs["layers"]) + 1):
            for state in ("h", "c"):
                xs = [f[f"layer{layer}/{state}"][:].astype(np.float64) for f in files]
                xs = [x - x.mean(axis=0) for x in xs]
                norms = [np.linalg.norm(x.T @ x) for x in xs]
                out += [np.sum((x.T @ y) ** 2) / (nx * ny) for x, nx in zip(xs, norms) for y, ny in zip(xs, norms)]
        return np.array(out)
    finally:
        for f in files:
            f.close()


def measured(fn, *args):
    """(result, CPU seconds, traced peak MiB) of ``fn(*args)``."""
    tracemalloc.start()
    start = time.process_time()
    result = fn(*args)
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def thesis_block(folder: Path, words: list[str], models: int) -> None:
    """``cka_table`` on the activations files of ``models`` random models of the thesis's width (2000) of as many
    tokens as the job reads in one block there: its time per block, and per 18 000-token text; then the same with
    the neuron matches (``similarity_tables``), whose extra time is per text, whatever its length."""
    from lstmscope.similarity import BLOCK_VALUES, ROTATIONS, cka_table, similarity_tables

    rows = max(1, BLOCK_VALUES // (models * 2000))
    paths = make_files(folder, words, rows, models, 2000, 1000)
    _, seconds, _ = measured(cka_table, paths)
    print(f"thesis shape: {models} models x 2000 neurons, one block of {rows} tokens per layer and state took "
          f"{seconds / 4:.1f} s CPU: {18000 / rows * seconds / 60:.1f} min per 18 000-token text (2 layers x 2 states)")
    _, both, _ = measured(similarity_tables, paths)
    print(f"with the neuron matches: {both:.1f} s CPU, {(both - seconds) / 60:.1f} min more per text "
          f"({models * (models - 1)} ordered pairs x 2 layers x 2 states x {ROTATIONS} rotations, each with a "
          "one-to-one pairing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--models", type=int, default=9)
    ap.add_argument("--hidden", type=int, default=64, help="units per layer of the random models (the default's 64)")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--tokens", type=int, default=18000)
    ap.add_argument("--tokens2", type=int, default=36000)
    ap.add_argument("--thesis-block", action="store_true", help="also time one block at the thesis's shape (2.6 GB)")
    ap.add_argument("--block-models", type=int, default=9, help="models side by side in --thesis-block")
    args = ap.parse_args()
    if args.models < 2:
        ap.error(f"--models {args.models}: at least 2")
    import numpy as np
    from threadpoolctl import threadpool_limits

    from lstmscope.similarity import cka_table

    words = text_words(Path(args.data), ap, tokens=args.tokens, tokens2=args.tokens2)
    print(f"linear CKA of {args.models} random models of hidden {args.hidden} (vocabulary {args.vocab}), every pair, "
          "2 layers x 2 states; CPU time, one thread, and traced peak memory:")
    peaks, same = [], True
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        for n in (args.tokens, args.tokens2):
            paths = make_files(Path(tmp), words, n, args.models, args.hidden, args.vocab)
            if not peaks:  # once, untimed: the first call's imports (scipy's BLAS, pandas' readers) are no one's cost
                cka_table(paths[:2])
            ours, t_ours, m_ours = measured(cka_table, paths)
            theirs, t_theirs, m_theirs = measured(textbook, paths)
            difference = float(np.max(np.abs(ours["cka"].to_numpy() - theirs)))
            same = same and difference < 1e-9
            peaks.append(m_ours)
            print(f"{n:>7} tokens: ours {t_ours:7.2f} s {m_ours:8.1f} MiB   in memory {t_theirs:7.2f} s "
                  f"{m_theirs:8.1f} MiB   in memory / ours {t_theirs / t_ours:.2f}x   largest difference "
                  f"{difference:.1e}")
    print(f"growth of ours' peak from {args.tokens} to {args.tokens2} tokens: {peaks[1] - peaks[0]:+.1f} MiB")
    print(f"ours computed the textbook's numbers: {same}")
    if args.thesis_block:
        with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
            thesis_block(Path(tmp), words, args.block_models)


if __name__ == "__main__":
    main()

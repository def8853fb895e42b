"""t-SNE: the embed_tsne stage vs a plain PCA + openTSNE call (the overhead of lstmscope's code).

Both project the same states with the same settings (the default config's: PCA to 50
dimensions, perplexity 30, 250 + 500 iterations, seed 42, one thread):

* stage: ``lstmscope.embedding.embed_tsne``: read one layer's states from the activations
         file, PCA, openTSNE with progress logging every 50 iterations, write the CSV;
* plain: ``sklearn PCA(...).fit_transform`` + ``openTSNE.TSNE(...).fit`` on states already in
         memory; nothing read or written, no progress callbacks.

The states are those of a real LSTM: a checkpoint (--checkpoint, with its vocabulary) or,
by default, a freshly initialised model of the default experiment's shape (vocabulary
10 000, embedding 32, hidden 64, 2 layers) reading the first --tokens tokens of WikiText-2's
test split, written by the pipeline's own activations writer. Coordinates of the two are
compared (they must be identical). Timings: median wall seconds of --repeats runs, interleaved.

Target: the stage takes no more than a few per cent longer than the plain call.

Usage: python benchmarks/tsne_overhead.py [--tokens 4000] [--layer 2] [--state c] [--repeats 3]
       [--checkpoint results/models/d0.0_r0/model.pt --vocabulary results/data/vocabulary.json]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from common import DATA, write_bench_activations  # first: puts the library on sys.path, pins the CPU kernels

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lstmscope.embedding import TSNESettings, embed_tsne, read_states  # noqa: E402
from lstmscope.model import LSTMLanguageModel, ModelConfig, load_checkpoint  # noqa: E402
from lstmscope.points import read_embedding  # noqa: E402
from lstmscope.vocabulary import Vocabulary, build_vocabulary, read_tokens  # noqa: E402



def activations(folder: Path, tokens: int, checkpoint: str | None, vocabulary: str | None) -> Path:
    text = read_tokens(DATA / "test.txt")[:tokens]
    if checkpoint:
        model, _ = load_checkpoint(checkpoint)
        vocab = Vocabulary.load(vocabulary)
    else:
        torch.manual_seed(0)
        vocab = build_vocabulary([read_tokens(DATA / "train.txt")], max_size=10000)
        model = LSTMLanguageModel(ModelConfig(len(vocab), 32, 64, 2, 0.0)).eval()
    ids = vocab.encode(text)
    path = folder / "bench.h5"
    write_bench_activations(model, ids, vocab.decode(ids), path)
    return path


def plain(states: np.ndarray, s: TSNESettings) -> np.ndarray:
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    # the stage's solver (scikit-learn's `auto` picks it for the default states, not for 2 000 units); the stage
    # also signs each component by its largest loading, as scikit-learn >= 1.5 does
    reduced = PCA(n_components=s.pca_components, svd_solver="covariance_eigh",
                  random_state=s.seed).fit_transform(states.astype(np.float64))
    return np.asarray(TSNE(perplexity=s.perplexity, n_iter=s.n_iter, early_exaggeration_iter=s.early_exaggeration_iter,
                           random_state=s.seed, n_jobs=1).fit(reduced))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--state", default="c")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--perplexity", type=float, default=30)
    ap.add_argument("--n-iter", type=int, default=500)
    ap.add_argument("--checkpoint")
    ap.add_argument("--vocabulary", default="results/data/vocabulary.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)  # the stage's progress lines are logged (not shown)
    settings = TSNESettings(pca_components=50, perplexity=args.perplexity, n_iter=args.n_iter,
                            early_exaggeration_iter=250, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        h5 = activations(folder, args.tokens, args.checkpoint, args.vocabulary)
        stage_s, plain_s = [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            embed_tsne(h5, folder / "stage.csv", args.layer, args.state, args.tokens, settings)
            stage_s.append(time.perf_counter() - t)
            _, _, states = read_states(h5, args.layer, args.state, args.tokens)  # outside the timing
            t = time.perf_counter()
            xy = plain(states, settings)
            plain_s.append(time.perf_counter() - t)
        ours = read_embedding(folder / "stage.csv")[["x", "y"]].to_numpy()
        same = np.allclose(ours, xy, atol=1e-5)
    a, b = statistics.median(stage_s), statistics.median(plain_s)
    print(f"{args.tokens} tokens, layer {args.layer} {args.state}, {states.shape[1]} neurons, "
          f"{settings.early_exaggeration_iter}+{settings.n_iter} iterations, 1 thread")
    print(f"  stage (read + PCA + t-SNE + log + write): {a:7.2f} s   runs {', '.join(f'{x:.2f}' for x in stage_s)}")
    print(f"  plain PCA + openTSNE:                     {b:7.2f} s   runs {', '.join(f'{x:.2f}' for x in plain_s)}")
    print(f"  overhead {100 * (a / b - 1):+.1f} %   same coordinates (to the CSV's 6 decimals): {same}")


if __name__ == "__main__":
    main()

"""Activation dump throughput: lstmscope's dump vs a per-token loop with hooks vs a pure forward pass.

All three run the same model (the default experiment's shape: vocabulary 10 000, embedding
32, hidden 64, 2 layers; or a trained checkpoint with --checkpoint) over the same text (the
first --tokens tokens of WikiText-2's test split) on the CPU, in eval mode, one process:

* dump:    ``write_activations``: every layer's h and c for every token, the expectancy of
           every word, all written to an HDF5 file (float32, chunks of 1024 rows);
* loop:    the obvious way: one ``model(token)`` call per token, a forward hook on the LSTM
           recording every layer's (h, c), ``log_softmax`` of the logits for the expectancy;
           kept in memory, nothing written;
* forward: ``model(text)`` in one call: logits only, no states kept, no softmax;
  forward + log_softmax is printed too (what pytorch/examples' model returns);
* decoder: only the decoder's matrix product (the logits of every word of the vocabulary after
  every token), in the dump's blocks of rows, nothing else: the arithmetic that any exact
  expectancy needs (its normaliser sums over the whole vocabulary), so loop / decoder is the
  most any exact dump could reach on this CPU.

Timings are CPU seconds of this process (steadier than wall time on a shared machine; with
one thread they equal wall time on an idle one), the median of --repeats runs, interleaved.
Targets: dump >= 50x faster than the loop, dump time <= 1.25x the pure forward's.

With --device cuda everything runs on the GPU (the dump as with ``activations.device: cuda``: the
layers, gates, cell-state scan and expectancies there, the writing on the CPU), timed in wall
seconds with the GPU synchronised before each clock reading. loop / forward is printed too: the most
any dump could reach there, since every dump computes at least the forward pass.

Usage: python benchmarks/dump_throughput.py [--tokens 18000] [--loop-tokens 18000] [--threads 1]
       [--repeats 3] [--checkpoint results/models/d0.5_r0/model.pt] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import DATA, text_words  # first: puts the library on sys.path and pins the CPU kernels as in the pipeline

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lstmscope.activations import DECODER_ROWS, write_activations  # noqa: E402
from lstmscope.model import LSTMLanguageModel, ModelConfig, load_checkpoint  # noqa: E402



class Clock:
    """CPU seconds of this process on the CPU; wall seconds after a GPU synchronisation on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter()
        return time.process_time()


CLOCK = Clock(torch.device("cpu"))
CHUNK_TOKENS = 1024  # the dump's rows per chunk and block (the pipeline's activations.chunk_tokens default)


def hook_loop(model: LSTMLanguageModel, ids: torch.Tensor, kept: dict | None = None) -> float:
    """Per-token loop with a forward hook on the LSTM; returns seconds (and puts every layer's h and c and the log
    expectancy it computed into ``kept``, where given)."""
    L, N = model.config.layers, model.config.hidden_size
    T = len(ids)
    h_all = np.empty((L, T, N), dtype=np.float32)
    c_all = np.empty((L, T, N), dtype=np.float32)
    logexp = np.full(T, np.nan, dtype=np.float32)
    step = {"t": 0}

    def record(module, inputs, output):
        _, (h, c) = output
        h_all[:, step["t"]] = h[:, 0].cpu().numpy()
        c_all[:, step["t"]] = c[:, 0].cpu().numpy()

    handle = model.rnn.register_forward_hook(record)
    start = CLOCK()
    try:
        with torch.inference_mode():
            hidden = model.init_hidden(1)
            for t in range(T):
                step["t"] = t
                logits, hidden = model(ids[t:t + 1].view(1, 1), hidden)
                if t + 1 < T:
                    logexp[t + 1] = torch.log_softmax(logits[0], dim=0)[ids[t + 1]].item()
    finally:
        handle.remove()
    seconds = CLOCK() - start
    if kept is not None:
        kept.update(h=h_all, c=c_all, log_expectancy=logexp)
    return seconds


def pure_forward(model: LSTMLanguageModel, ids: torch.Tensor, softmax: bool = False) -> float:
    start = CLOCK()
    with torch.inference_mode():
        logits, _ = model(ids.view(-1, 1), model.init_hidden(1))
        if softmax:
            torch.log_softmax(logits, dim=1)
    return CLOCK() - start


def decoder_only(model: LSTMLanguageModel, h: torch.Tensor, rows: int) -> float:
    """The decoder's product for every row of ``h`` in the dump's blocks of ``rows``: logits computed, then
    dropped."""
    weight, bias = model.decoder.weight.detach(), model.decoder.bias.detach()
    buf = torch.empty(rows, weight.shape[0], device=weight.device)
    wt = weight.t()
    start = CLOCK()
    with torch.inference_mode():
        for s in range(0, len(h), rows):
            block = h[s:s + rows]
            torch.addmm(bias, block, wt, out=buf[:len(block)])
    return CLOCK() - start


def dump(model: LSTMLanguageModel, ids: torch.Tensor, words: list[str], folder: Path) -> float:
    start = CLOCK()
    write_activations(model, ids.cpu().numpy(), words, folder / "bench.h5", dtype="float32",
                      chunk_tokens=CHUNK_TOKENS, progress=False)
    return CLOCK() - start


def same_as_loop(dumped: Path, kept: dict, tokens: int) -> str:
    """Whether the dump's file holds what the loop computed over its first ``tokens`` tokens: every layer's h and c
    and the log expectancy (a dump that left work out would be faster, not right)."""
    import h5py

    with h5py.File(dumped, "r") as f:
        gaps = [np.abs(f[f"layer{k + 1}/{s}"][:tokens] - kept[s][k]).max() for k in range(len(kept["h"]))
                for s in ("h", "c")]
        logp = f["log_expectancy"][:tokens]
    same_nan = bool((np.isnan(logp) == np.isnan(kept["log_expectancy"])).all())
    gaps.append(np.nanmax(np.abs(logp - kept["log_expectancy"])))  # the NaN at t = 0 in both is no difference
    gap = float(np.max(gaps))  # a NaN state is the largest difference, not none
    gap = gap if np.isfinite(gap) else float("inf")
    return (f"the dump's h, c and log expectancy equal the loop's ({tokens} tokens): {same_nan and gap < 1e-4} "
            f"(largest difference {gap:.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--tokens", type=int, default=18000)
    ap.add_argument("--loop-tokens", type=int, default=None, help="tokens for the loop (default: --tokens); "
                    "its time is scaled to --tokens")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--embedding", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("dump_throughput.py: --device cuda but no CUDA device is available")
    CLOCK = Clock(device)

    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
    else:
        torch.manual_seed(0)
        model = LSTMLanguageModel(ModelConfig(args.vocab, args.embedding, args.hidden, 2, dropout=0.2)).eval()
    words = text_words(Path(args.data), ap, tokens=args.tokens)[: args.tokens]
    V = model.config.vocab_size
    # Any fixed mapping of words to ids serves for timing: hash into the model's vocabulary.
    ids = torch.tensor([sum(map(ord, w)) % V for w in words], dtype=torch.int64)
    loop_tokens = min(args.loop_tokens or args.tokens, args.tokens)

    on_gpu = device.type == "cuda"
    decoder_rows = CHUNK_TOKENS if on_gpu else DECODER_ROWS  # the dump's own blocks (activations.iterate_activations)
    times = {"dump": [], "loop": [], "forward": [], "forward+log_softmax": [], "decoder": []}
    model = model.to(device)
    ids = ids.to(device)
    # any h in [-1, 1]: the product's cost is the same
    h_top = torch.rand(len(ids), model.config.hidden_size, device=device) * 2 - 1
    if on_gpu:  # warm-up: CUDA context, cuDNN plans, cuBLAS handles
        pure_forward(model, ids, softmax=True)
        decoder_only(model, h_top, decoder_rows)
        hook_loop(model, ids[:100])
        with tempfile.TemporaryDirectory() as tmp:
            dump(model, ids[:2000], words[:2000], Path(tmp))
    kept: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            times["forward"].append(pure_forward(model, ids))
            times["forward+log_softmax"].append(pure_forward(model, ids, softmax=True))
            times["dump"].append(dump(model, ids, words, Path(tmp)))
            times["decoder"].append(decoder_only(model, h_top, decoder_rows))
            times["loop"].append(hook_loop(model, ids[:loop_tokens], kept) * args.tokens / loop_tokens)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
        agreement = same_as_loop(Path(tmp) / "bench.h5", kept, loop_tokens)
    med = {k: statistics.median(v) for k, v in times.items()}
    cfg = model.config
    where = (f"GPU {torch.cuda.get_device_name(device)}, wall seconds" if on_gpu
             else f"CPU, {args.threads} thread(s), CPU seconds")
    print(f"model: vocab {cfg.vocab_size}, embedding {cfg.embedding_size}, hidden {cfg.hidden_size}, "
          f"{cfg.layers} layers; {args.tokens} tokens; {where}; median of {args.repeats}")
    for k, v in med.items():
        print(f"{k:>20}: {v:8.3f} s  {args.tokens / v:12,.0f} tokens/s")
    print(f"loop / dump:    {med['loop'] / med['dump']:.1f}x   (target >= 50x; the pure forward itself is "
          f"{med['loop'] / med['forward']:.1f}x the loop, the most any dump that keeps the forward's pace can reach)")
    print(f"loop / decoder: {med['loop'] / med['decoder']:.1f}x   (the decoder's product alone, which every exact "
          f"expectancy needs: the most any exact dump could reach here)")
    print(f"dump / forward: {med['dump'] / med['forward']:.2f}x   (target <= 1.25x)")
    print(f"dump / (forward + log_softmax): {med['dump'] / med['forward+log_softmax']:.2f}x")
    print(agreement)


if __name__ == "__main__":
    main()

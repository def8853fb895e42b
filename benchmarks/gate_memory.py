"""Memory of the gate statistics: glibc's fixed mmap threshold (``gates.fixed_mmap_threshold``) against glibc's default.

``gate_statistics`` computes the gates block by block (``gates.BLOCK_TOKENS`` rows at a time), so its memory should not
grow with the text. With glibc's default malloc settings it did at the thesis's width: every freed block array raises
glibc's mmap threshold, later block arrays come from the heap and fragment it, and the resident memory grew by 50-100
MB per block. The job therefore fixes the threshold (1 MiB) first. This benchmark writes, for a random-weight model of
``--hidden`` units per layer (default 2000, the thesis's width; vocabulary ``--vocab``), the activations file of the
first ``--tokens`` and ``--tokens2`` tokens of WikiText-2's test split, runs ``gate_statistics`` on each in a fresh
process with the fixed threshold (as the pipeline) and with glibc's default, and prints each run's peak resident
memory (VmHWM) and CPU time, the growth from the shorter text to the longer, and whether both settings wrote the same
table (they must: the threshold changes where memory comes from, not a number). Linux with glibc only.

Usage: python benchmarks/gate_memory.py [--tokens 5000] [--tokens2 10000] [--hidden 2000] [--vocab 10000]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, text_words, write_bench_activations  # noqa: E402  (also puts the library on sys.path)


def peak_resident_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM (not Linux?)")


def _child(checkpoint: str, activations: str, csv: str, fixed: bool, queue) -> None:
    import torch

    from lstmscope import gates

    torch.set_num_threads(1)
    if not fixed:  # glibc's default: the job's own call made a no-op
        gates.fixed_mmap_threshold = lambda nbytes=0: False
    start = time.process_time()
    gates.gate_statistics(checkpoint, activations, csv, saturation=0.1)
    queue.put((time.process_time() - start, peak_resident_mib()))


def measure(checkpoint: str, activations: str, csv: str, fixed: bool) -> tuple[float, float]:
    """CPU seconds and peak resident MiB of one ``gate_statistics`` run in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(checkpoint, activations, csv, fixed, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"gate_statistics failed (exit status {proc.exitcode}) on {activations}")
    return result


def make_files(folder: Path, words: list[str], lengths: list[int], hidden: int, vocab: int) -> tuple[str, list[str]]:
    """A random-weight checkpoint and, per length, the activations file of the text's first that many tokens, with
    the checkpoint's SHA-256 (which the gate statistics check)."""
    import torch

    from lstmscope.model import LSTMLanguageModel, ModelConfig, save_checkpoint
    from lstmscope.provenance import sha256_file

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab, min(400, hidden), hidden, 2, dropout=0.2)).eval()
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, model, "0" * 64)
    sha = sha256_file(checkpoint)
    paths = []
    for n in lengths:
        ids = [sum(map(ord, w)) % vocab for w in words[:n]]
        path = folder / f"text{n}.h5"
        write_bench_activations(model, ids, words[:n], path, checkpoint_sha256=sha)
        paths.append(str(path))
    return str(checkpoint), paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--tokens", type=int, default=5000)
    ap.add_argument("--tokens2", type=int, default=10000)
    ap.add_argument("--hidden", type=int, default=2000, help="units per layer of the random model (the thesis's 2000)")
    ap.add_argument("--vocab", type=int, default=10000, help="its vocabulary (the gates do not depend on it)")
    args = ap.parse_args()
    from lstmscope.gates import BLOCK_TOKENS

    if not Path("/proc/self/status").is_file():
        ap.error("needs Linux (/proc/self/status)")
    words = text_words(Path(args.data), ap, tokens=args.tokens, tokens2=args.tokens2)
    lengths = [args.tokens, args.tokens2]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint, files = make_files(folder, words, lengths, args.hidden, args.vocab)
        print(f"gate_statistics, random model of hidden {args.hidden}, vocabulary {args.vocab}, blocks of "
              f"{BLOCK_TOKENS} tokens; peak resident memory (VmHWM) and CPU time of a fresh process:")
        peaks, tables = {}, {}
        for n, path in zip(lengths, files):
            for fixed in (True, False):
                csv = folder / f"gates{n}_{'fixed' if fixed else 'default'}.csv"
                seconds, peak = measure(checkpoint, path, str(csv), fixed)
                peaks[(n, fixed)] = peak
                tables[(n, fixed)] = csv.read_bytes()
                label = "fixed threshold (the pipeline's)" if fixed else "glibc's default"
                print(f"{n:>7} tokens, {label:<33} {peak:8.0f} MiB  {seconds:7.1f} s CPU")
        for fixed in (True, False):
            label = "fixed threshold" if fixed else "glibc's default"
            grown = peaks[(lengths[1], fixed)] - peaks[(lengths[0], fixed)]
            print(f"growth from {lengths[0]} to {lengths[1]} tokens, {label}: {grown:+.0f} MiB")
        print(f"default / fixed peak at {lengths[1]} tokens: "
              f"{peaks[(lengths[1], False)] / peaks[(lengths[1], True)]:.2f}x")
        same = all(tables[(n, True)] == tables[(n, False)] for n in lengths)
        print(f"both settings wrote the same table: {same}")


if __name__ == "__main__":
    main()
